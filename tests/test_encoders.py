"""One conformance suite over every registered encoder (snnedge.ENCODERS): blocks of any
size give the same steps as one block of all T, the layout is (steps, B, ...) (or (B, ...)
when static), a seed repeats the stream, and spiking encoders emit events."""
import pytest
import torch

from snnedge import ENCODERS
from snnedge.encoders import get_encoder

T, B, SAMPLE = 12, 3, (2, 4)


def data(name: str) -> torch.Tensor:
    """The input each encoder takes: a sample batch [B, ...] in [0, 1], or a sequence."""
    g = torch.Generator().manual_seed(0)
    if name == "sequence":
        return torch.rand(B, T, *SAMPLE, generator=g)
    return torch.rand(B, *SAMPLE, generator=g)


def steps(name: str, cuts, seed: int = 5) -> torch.Tensor:
    enc = get_encoder(name)
    enc.start(data(name), T, seed)
    blocks = []
    for t0, t1 in zip(cuts[:-1], cuts[1:]):
        blk = enc.block(t0, t1)
        if enc.static:
            assert blk.shape == (B, *SAMPLE)
            blk = blk.unsqueeze(0).expand(t1 - t0, *blk.shape)
        assert blk.shape == (t1 - t0, B, *SAMPLE)
        blocks.append(blk)
    return torch.cat(blocks)


def test_every_registered_encoder_is_covered():
    assert set(ENCODERS) == {"direct", "poisson", "latency", "sequence"}


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_blocks_of_any_size_give_the_same_steps(name):
    whole = steps(name, [0, T])
    for cuts in ([0, 1, 5, 12], [0, 4, 8, 12], list(range(T + 1))):
        assert torch.equal(steps(name, cuts), whole), cuts


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_a_seed_repeats_the_stream(name):
    assert torch.equal(steps(name, [0, T], seed=9), steps(name, [0, T], seed=9))


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_what_each_encoder_emits(name):
    out = steps(name, [0, T])
    x = data(name)
    if name == "direct":
        assert torch.equal(out[0], x) and torch.equal(out[-1], x)
    elif name == "sequence":
        assert torch.equal(out, x.transpose(0, 1))
    else:  # spikes
        assert set(out.unique().tolist()) <= {0.0, 1.0} and get_encoder(name).spiking
    if name == "latency":
        assert torch.equal(out.sum(0), (x > 0).to(out.dtype))  # one spike per non-zero input
    if name == "poisson":
        assert 0 < out.mean() < 1
