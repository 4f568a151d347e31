"""simulate's defaults against the rules before issue 16's third session, in one process.

For each network (names of ``speed_nets``), the dense bound (T plain forward passes of the
ANN), ``after`` (blocks by the live activations, ``path_choice`` policy "timed") and
``before`` (``path_choice`` policy "limit", blocks by the sum of all activations within
128 MiB passed as ``block_steps``), interleaved, 5 repeats; prints one JSON line per network
with the median ratios to the bound. T = 32, batch 100, 2 threads.

Usage: PYTHONPATH=. python examples/benchmarks/speed_before_after.py NET [NET ...]
"""
import sys, torch, json
sys.path.insert(0, "examples/benchmarks")
import speed_nets
import snnedge
from snnedge import path_choice
from snnedge.engine import block_steps_for, live_numel, block_budget
from converters import convert
from snnedge.datasets import load_mnist_digits, load_mnist_test
torch.set_num_threads(2)
xt, _ = load_mnist_digits(); xs, _ = load_mnist_test()
out = []
for net in speed_nets.networks(sys.argv[1:]):
    ann = net.build(); xin = net.inputs(xs[:100]); cin = net.inputs(xt[:500])
    snn = convert(ann, calibration=cin)
    shapes = snn.shapes(tuple(xin.shape[1:]))
    old_steps = block_steps_for(shapes, 100, 32, 4)
    new_steps = block_steps_for(shapes, 100, 32, 4, budget_bytes=block_budget("cpu"), live=live_numel(snn, shapes))
    def bound():
        with torch.no_grad():
            for _ in range(32): ann(xin)
    def new():
        path_choice.set_path_policy("timed")
        return snnedge.simulate(snn, xin, timesteps=32, batch_size=100, progress=False)
    def old():
        path_choice.set_path_policy("limit")
        return snnedge.simulate(snn, xin, timesteps=32, batch_size=100, block_steps=old_steps, progress=False)
    bound_s, r = speed_nets.interleaved_ratios({"bound": bound, "new": new, "old": old}, 5)
    row = {"net": net.name, "bound_s": bound_s, "old_steps": old_steps, "new_steps": new_steps, **r,
           "event_layers": len(new().extra["event_layers"][0])}
    out.append(row)
    print(json.dumps(row), flush=True)
