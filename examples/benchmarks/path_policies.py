"""simulate / dense bound under each path policy of engine "auto" ("timed", "limit") and the
dense engine, one process, interleaved (median of 3 after a warm-up); ``first-timed`` is the
very first "timed" call, which times the paths. Usage: PYTHONPATH=. python
examples/benchmarks/path_policies.py THREADS NET [NET ...]
"""
import sys, torch, statistics, time
sys.path.insert(0, "examples/benchmarks")
import speed_nets
import snnedge
from snnedge import path_choice
from converters import convert
from snnedge.datasets import load_mnist_digits, load_mnist_test
torch.set_num_threads(int(sys.argv[1]))
xt, _ = load_mnist_digits(); xs, _ = load_mnist_test()
for net in speed_nets.networks(sys.argv[2:]):
    ann = net.build(); xin = net.inputs(xs[:100]); cin = net.inputs(xt[:500])
    snn = convert(ann, calibration=cin)
    def bound():
        with torch.no_grad():
            for _ in range(32): ann(xin)
    def run(policy, engine="auto"):
        def f():
            path_choice.set_path_policy(policy)
            return snnedge.simulate(snn, xin, timesteps=32, batch_size=100, engine=engine, progress=False)
        return f
    fns = {"bound": bound, "timed": run("timed"), "limit": run("limit"), "dense": run("limit", "dense")}
    t0 = time.perf_counter(); fns["timed"](); first = time.perf_counter() - t0
    for f in fns.values(): f()
    ts = {k: [] for k in fns}
    for _ in range(3):
        for k, f in fns.items():
            s = time.perf_counter(); f(); ts[k].append(time.perf_counter() - s)
    b = statistics.median(ts["bound"])
    r = fns["timed"]()
    print(net.name, "bound %.3f" % b, "first-timed %.2f" % (first / b), " ".join(f"{k}:{statistics.median(v)/b:.2f}" for k, v in ts.items() if k != "bound"), "events:", len(r.extra["event_layers"][0]), flush=True)
