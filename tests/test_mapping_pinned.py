"""Mappings pinned before the tiler was rewritten (issue 17): every per-layer row, the cores,
chips, problems and notes, and every neuron's destination count, for networks covering each
layer kind the mapper reads, on every family (and Loihi with a known synapse width, whose
tiling shrinks to fit synaptic memory).

The exact tiler must reproduce these figures; ``python tests/test_mapping_pinned.py`` rewrote
the file from the old mapper (the autograd tiler with representative-tile screening) and is
kept to show how the numbers were made.
"""
import json
import pathlib
import sys

import pytest
import torch

from neuromorphic_targets import Figure, get_profile, map_network

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from mapping_nets import PINNED  # noqa: E402

GOLDEN = pathlib.Path(__file__).parent / "data" / "mapping_pinned.json"
PROFILES = ("truenorth", "dynap-se", "dynap-cnn", "loihi", "loihi-8bit")


def profile(name: str):
    if name == "loihi-8bit":
        return get_profile("loihi").replace(
            name="loihi-8bit", synapse_bits=Figure(8, "bit", "assumption for a test", False))
    return get_profile(name)


def record(net, name: str) -> dict:
    m = map_network(net, profile(name))
    out = m.to_dict()
    out["destinations"] = {layer: {str(v): int(c) for v, c in zip(*d.unique(return_counts=True))}
                           for layer, d in m.destinations.items()}
    out["destinations_shape"] = {layer: list(d.shape) for layer, d in m.destinations.items()}
    return json.loads(json.dumps(out))


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("net_name", sorted(PINNED))
def test_mapping_equals_the_pinned_one(net_name):
    golden = json.loads(GOLDEN.read_text())[net_name]
    net = PINNED[net_name]()
    for name in PROFILES:
        assert record(net, name) == golden[name], (net_name, name)


if __name__ == "__main__":
    torch.set_num_threads(1)
    GOLDEN.write_text(json.dumps({n: {p: record(f(), p) for p in PROFILES} for n, f in PINNED.items()},
                                 indent=1, sort_keys=True) + "\n")
