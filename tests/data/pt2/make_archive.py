"""Write ``tiny_cnn_torch<version>.pt2`` next to this file with the running torch: the
command-line tests' TinyCNN (seeded) exported for any batch size, as a user of that torch
release would save it. The archives kept here let one test environment check that
``snnedge convert`` reads the archives of every torch release in the supported range and
refuses those it cannot check. Run: ``python tests/data/pt2/make_archive.py``."""
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # tests/, for cli_models

from cli_models import TinyCNN  # noqa: E402


def main() -> Path:
    torch.manual_seed(0)
    model = TinyCNN().eval()
    x = torch.rand(4, 1, 8, 8)
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(model, (x,), dynamic_shapes=({0: batch},))
    out = HERE / f"tiny_cnn_torch{torch.__version__.split('+')[0]}.pt2"
    torch.export.save(program, out)
    return out


if __name__ == "__main__":
    print(main())
