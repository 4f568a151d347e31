"""Training speed and memory: `snnedge.fit` against snnTorch, same network, T, batch and data.

Both sides train the acceptance network (``acceptance_net()``: conv 1->32 (3x3) -> avg-pool ->
LIF -> conv 32->64 -> avg-pool -> LIF -> linear 3136->128 -> LIF -> linear 128->10 readout,
beta 0.9, threshold 1, arctan surrogate with alpha 2, reset by subtraction) from the same
initial weights on the same 5,000 MNIST digits in the same order, with Adam and cross-entropy on
the mean readout over T steps.

* snnedge: ``snnedge.fit`` (the dense engine's multi-step execution: one convolution over
  ``T x B``, the static first layer once per batch, fused neuron blocks).
* snnTorch 1.0.0: its ``snn.Leaky`` neurons and its usual loop, one time step per call
  (``for t in range(T): cur = pool(conv(x)); spk, mem = lif(cur, mem) ...``), as in the
  snnTorch tutorials.

Each side runs in its own process (snnTorch from the peers virtual environment, which has
the same torch), with the same thread count and ``OMP_WAIT_POLICY``; epochs alternate between
the sides and the fastest of ``--repeats`` epochs is kept. Peak memory of one training step
(forward, backward, Adam) at ``T=8`` and ``T=64`` is measured for both with
``snnedge.training.measure_peak_memory`` (the most tensor bytes alive at once).

Usage::

    python examples/benchmarks/training.py [--timesteps 4] [--batch-size 32] [--threads 2]
        [--repeats 2] [--peers-python /work/peersvenv/bin/python] [--json out.json]
    python examples/benchmarks/training.py --quick     # a few batches, for a smoke test
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PEERS_PYTHON = os.environ.get("SNNEDGE_PEERS_PYTHON", str(REPO.parent / "peersvenv" / "bin" / "python"))


def acceptance_net(c1: int = 32, c2: int = 64, hidden: int = 128, beta: float = 0.9):
    """The convolutional LIF network of the training acceptance test (MNIST, 28x28 inputs)."""
    import snnedge
    from torch import nn
    return snnedge.sequential(
        nn.Conv2d(1, c1, 3, padding=1), nn.AvgPool2d(2), snnedge.LIF(beta=beta),
        nn.Conv2d(c1, c2, 3, padding=1), nn.AvgPool2d(2), snnedge.LIF(beta=beta),
        nn.Flatten(), nn.Linear(c2 * 7 * 7, hidden), snnedge.LIF(beta=beta),
        nn.Linear(hidden, 10), input_shape=(1, 28, 28))


def snntorch_net(state: dict, beta: float = 0.9):
    """The same network in snnTorch: Leaky neurons, one step per call; weights from ``state``."""
    import snntorch as snn
    import torch
    import torch.nn.functional as F
    from snntorch import surrogate
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            w = {k: state[k] for k in ("0.weight", "3.weight", "7.weight", "9.weight")}
            self.conv1 = nn.Conv2d(w["0.weight"].shape[1], w["0.weight"].shape[0], 3, padding=1)
            self.conv2 = nn.Conv2d(w["3.weight"].shape[1], w["3.weight"].shape[0], 3, padding=1)
            self.fc1 = nn.Linear(w["7.weight"].shape[1], w["7.weight"].shape[0])
            self.fc2 = nn.Linear(w["9.weight"].shape[1], w["9.weight"].shape[0])
            grad = surrogate.atan(alpha=2.0)
            self.lif1 = snn.Leaky(beta=beta, spike_grad=grad)
            self.lif2 = snn.Leaky(beta=beta, spike_grad=grad)
            self.lif3 = snn.Leaky(beta=beta, spike_grad=grad)
            for mine, theirs in (("conv1", "0"), ("conv2", "3"), ("fc1", "7"), ("fc2", "9")):
                getattr(self, mine).load_state_dict(
                    {"weight": state[f"{theirs}.weight"], "bias": state[f"{theirs}.bias"]})

        def forward(self, x, steps):
            mem1, mem2, mem3 = self.lif1.init_leaky(), self.lif2.init_leaky(), self.lif3.init_leaky()
            out = []
            for _ in range(steps):
                spk1, mem1 = self.lif1(F.avg_pool2d(self.conv1(x), 2), mem1)
                spk2, mem2 = self.lif2(F.avg_pool2d(self.conv2(spk1), 2), mem2)
                spk3, mem3 = self.lif3(self.fc1(spk2.flatten(1)), mem3)
                out.append(self.fc2(spk3))
            return torch.stack(out)
    return Net()


# -- one side, in its own process -----------------------------------------------------
def _side_snnedge(work: Path, args) -> dict:
    import torch
    from snnedge.training import evaluate, fit, step_peak_memory
    data = torch.load(work / "data.pt", weights_only=True)
    x, y, xt, yt = data["x"], data["y"], data["x_test"], data["y_test"]
    net = acceptance_net()
    net.load_state_dict(torch.load(work / "init.pt", weights_only=True))
    warm = acceptance_net()
    fit(warm, (x[:2 * args.batch_size], y[:2 * args.batch_size]), epochs=1, timesteps=args.timesteps,
        batch_size=args.batch_size, progress=False)
    hist = fit(net, (x, y), epochs=1, timesteps=args.timesteps, batch_size=args.batch_size,
               lr=args.lr, shuffle=False, progress=False)
    result = {"epoch_s": hist.epoch_time_s[0], "train_loss": hist.loss[0],
              "train_accuracy": hist.accuracy[0],
              "test_accuracy": evaluate(net, (xt, yt), args.timesteps)["accuracy"]}
    if args.memory:
        xb, yb = x[:args.batch_size], y[:args.batch_size]
        for steps in (8, 64):
            result[f"peak_mib_T{steps}_full"] = step_peak_memory(net, xb, yb, steps) / 2**20
            result[f"peak_mib_T{steps}_checkpoint"] = step_peak_memory(
                net, xb, yb, steps, bptt="checkpoint", block_steps=8) / 2**20
    return result


def _side_snntorch(work: Path, args) -> dict:
    import torch
    import torch.nn.functional as F
    from snnedge.training import measure_peak_memory
    data = torch.load(work / "data.pt", weights_only=True)
    x, y, xt, yt = data["x"], data["y"], data["x_test"], data["y_test"]
    state = torch.load(work / "init.pt", weights_only=True)
    steps, bs = args.timesteps, args.batch_size

    def train_step(net, opt, xb, yb, t):
        out = net(xb, t)
        loss = F.cross_entropy(out.mean(0), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss), int((out.detach().sum(0).argmax(-1) == yb).sum())

    warm = snntorch_net(state)
    warm_opt = torch.optim.Adam(warm.parameters(), lr=args.lr)
    for i in range(2):
        train_step(warm, warm_opt, x[i * bs:(i + 1) * bs], y[i * bs:(i + 1) * bs], steps)
    net = snntorch_net(state)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    net.train()
    start = time.perf_counter()
    total, correct = 0.0, 0
    for i in range(0, x.shape[0], bs):
        loss, c = train_step(net, opt, x[i:i + bs], y[i:i + bs], steps)
        total += loss * x[i:i + bs].shape[0]
        correct += c
    epoch_s = time.perf_counter() - start
    with torch.no_grad():
        pred = torch.cat([net(xt[i:i + 256], steps).sum(0).argmax(-1) for i in range(0, xt.shape[0], 256)])
    result = {"epoch_s": epoch_s, "train_loss": total / x.shape[0], "train_accuracy": correct / x.shape[0],
              "test_accuracy": float((pred == yt).float().mean())}
    if args.memory:
        for t in (8, 64):
            fresh = snntorch_net(state)
            fresh_opt = torch.optim.Adam(fresh.parameters(), lr=args.lr)
            _, peak = measure_peak_memory(train_step, fresh, fresh_opt, x[:bs], y[:bs], t)
            result[f"peak_mib_T{t}_full"] = peak / 2**20
    import snntorch
    result["snntorch"] = snntorch.__version__
    return result


def _child(args) -> None:
    os.environ.setdefault("PYTHONHASHSEED", "0")
    import torch
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(REPO))
    work = Path(args.work)
    result = (_side_snnedge if args.side == "snnedge" else _side_snntorch)(work, args)
    result.update(side=args.side, torch=torch.__version__, threads=torch.get_num_threads())
    print("RESULT " + json.dumps(result))


def _run_side(python: str, side: str, work: Path, args) -> dict:
    cmd = [python, __file__, "--side", side, "--work", str(work), "--timesteps", str(args.timesteps),
           "--batch-size", str(args.batch_size), "--threads", str(args.threads), "--lr", str(args.lr)]
    if args.memory:
        cmd.append("--memory")
    env = dict(os.environ)
    if args.omp_wait_policy != "unset":
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy.upper()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    if out.returncode != 0:
        raise RuntimeError(f"the {side} side failed:\n{out.stderr[-3000:]}")
    line = next(s for s in out.stdout.splitlines()[::-1] if s.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--timesteps", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--repeats", type=int, default=2, help="epochs timed per side (fastest kept)")
    p.add_argument("--train-samples", type=int, default=5000)
    p.add_argument("--test-samples", type=int, default=2000)
    p.add_argument("--peers-python", default=DEFAULT_PEERS_PYTHON)
    p.add_argument("--omp-wait-policy", default="passive", choices=["passive", "active", "unset"],
                   help="set for both sides; 'passive' keeps OpenMP threads from spinning on a "
                        "shared machine, where spinning threads slow small operators 30-100x")
    p.add_argument("--quick", action="store_true", help="256 samples, 1 repeat: a smoke test")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--side", choices=["snnedge", "snntorch"], help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    p.add_argument("--memory", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.side:
        return _child(args)
    if args.quick:
        args.train_samples, args.test_samples, args.repeats = 256, 256, 1

    sys.path.insert(0, str(REPO))
    import torch
    from snnedge.datasets import load_mnist_digits, load_mnist_test
    x, y = load_mnist_digits()
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))[:args.train_samples]
    xt, yt = load_mnist_test()
    torch.manual_seed(0)
    init = acceptance_net().state_dict()
    runs: dict[str, list[dict]] = {"snnedge": [], "snntorch": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        torch.save({"x": x[order], "y": y[order], "x_test": xt[:args.test_samples],
                    "y_test": yt[:args.test_samples]}, work / "data.pt")
        torch.save(init, work / "init.pt")
        for r in range(args.repeats):
            args.memory = r == 0
            for side, python in (("snnedge", sys.executable), ("snntorch", args.peers_python)):
                res = _run_side(python, side, work, args)
                runs[side].append(res)
                print(f"{side:9s} epoch {res['epoch_s']:7.1f} s  train acc {res['train_accuracy']:.4f}  "
                      f"test acc {res['test_accuracy']:.4f}", flush=True)
    best = {side: min(r["epoch_s"] for r in rs) for side, rs in runs.items()}
    summary = {"timesteps": args.timesteps, "batch_size": args.batch_size, "threads": args.threads,
               "train_samples": args.train_samples, "omp_wait_policy": args.omp_wait_policy,
               "epoch_s": best, "speedup": best["snntorch"] / best["snnedge"], "runs": runs}
    mem = {side: {k: v for k, v in rs[0].items() if k.startswith("peak_mib")} for side, rs in runs.items()}
    summary["peak_mib"] = mem
    print(f"\nseconds per epoch ({args.train_samples} samples, T={args.timesteps}, batch "
          f"{args.batch_size}, {args.threads} threads): snnedge {best['snnedge']:.1f}, snnTorch "
          f"{best['snntorch']:.1f} -> snnedge is {summary['speedup']:.2f}x faster")
    print("peak memory of one training step (MiB):")
    for side, m in mem.items():
        print(f"  {side:9s} " + "  ".join(f"{k[9:]}={v:.1f}" for k, v in sorted(m.items())))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
