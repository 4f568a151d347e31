"""Training speed and memory: `snnedge.fit` against snnTorch, same network, T, batch and data.

Both sides train the acceptance network (``acceptance_net()``: conv 1->32 (3x3) -> avg-pool ->
LIF -> conv 32->64 -> avg-pool -> LIF -> linear 3136->256 -> LIF -> linear 256->10 readout,
beta 0.9, threshold 1, arctan surrogate with alpha 2, reset by subtraction) from the same
initial weights on the same 5,000 MNIST digits in the same order, with Adam and cross-entropy on
the mean readout over T steps.

* snnedge: ``snnedge.fit`` (the dense engine's multi-step execution: one convolution over
  ``T x B``, the static first layer once per batch, fused neuron blocks, and each
  convolution + 2x2 average pool trained as one stride-2 convolution). The side
  ``snnedge-nofold`` is the same with ``fold_pooling=False``, to show what the folding adds,
  and ``snnedge-nchw`` with ``channels_last=False`` (torch's default memory layout for the
  convolutions), to show what the channels-last layout adds.
* snnTorch 1.0.0: its ``snn.Leaky`` neurons and its usual loop, one time step per call
  (``for t in range(T): cur = pool(conv(x)); spk, mem = lif(cur, mem) ...``), as in the
  snnTorch tutorials.

Each side runs in its own process (snnTorch from the peers virtual environment, which has
the same torch), with the same thread count and ``OMP_WAIT_POLICY``. The processes train in
lockstep: one batch of one side at a time, the sides taking turns (the order rotates every
batch), so that all of them meet the same load on a shared machine; an epoch's time is the sum
of its batches' times (for snnedge, everything ``fit`` does per batch). Peak memory of one
training step (forward, backward, Adam) at ``T=8`` and ``T=64`` is measured for every side
with ``measure_peak_memory`` of examples/benchmarks/peak_memory.py (the most tensor bytes alive
at once).

``--net`` trains another network on both sides (``NETS``: ``lif_heldout``, ``lif_vgg``,
``lif_mlp``, and ``zoo_lenet_w8``, ``zoo_mlp_dropout``, ``zoo_vgg_wide256``,
``zoo_allconv_strided``: conversion-zoo
architectures with LIF neurons for their ReLUs and no BatchNorm, ``zoo_net``; snnTorch's side
is then built by ``generic_snntorch_net`` from the same modules and weights).

Usage::

    python examples/benchmarks/training.py [--net acceptance] [--timesteps 8] [--batch-size 32] [--threads 2]
        [--peers-python /work/peersvenv/bin/python] [--json out.json]
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
# the interpreter that runs the snntorch side: this one unless told (it needs snntorch)
DEFAULT_PEERS_PYTHON = os.environ.get("SNNEDGE_PEERS_PYTHON", sys.executable)


def acceptance_net(c1: int = 32, c2: int = 64, hidden: int = 256, beta: float = 0.9):
    """The convolutional LIF network of the training acceptance test (MNIST, 28x28 inputs)."""
    import snnedge
    from torch import nn
    return snnedge.sequential(
        nn.Conv2d(1, c1, 3, padding=1), nn.AvgPool2d(2), snnedge.LIF(beta=beta),
        nn.Conv2d(c1, c2, 3, padding=1), nn.AvgPool2d(2), snnedge.LIF(beta=beta),
        nn.Flatten(), nn.Linear(c2 * 7 * 7, hidden), snnedge.LIF(beta=beta),
        nn.Linear(hidden, 10), input_shape=(1, 28, 28))


def lif_heldout_net(beta: float = 0.9):
    """A held-out conv LIF net (issue 16): 16 and 32 channels 5x5, average pools, 1568-128-10."""
    import snnedge
    from torch import nn
    return snnedge.sequential(
        nn.Conv2d(1, 16, 5, padding=2), nn.AvgPool2d(2), snnedge.LIF(beta=beta),
        nn.Conv2d(16, 32, 5, padding=2), nn.AvgPool2d(2), snnedge.LIF(beta=beta),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 128), snnedge.LIF(beta=beta),
        nn.Linear(128, 10), input_shape=(1, 28, 28))


def lif_vgg_net(beta: float = 0.9):
    """A VGG-like LIF net: conv 32-32-64 (3x3), average pools, 3136-256-10."""
    import snnedge
    from torch import nn
    return snnedge.sequential(
        nn.Conv2d(1, 32, 3, padding=1), snnedge.LIF(beta=beta),
        nn.Conv2d(32, 32, 3, padding=1), nn.AvgPool2d(2), snnedge.LIF(beta=beta),
        nn.Conv2d(32, 64, 3, padding=1), nn.AvgPool2d(2), snnedge.LIF(beta=beta),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 256), snnedge.LIF(beta=beta),
        nn.Linear(256, 10), input_shape=(1, 28, 28))


def lif_mlp_net(beta: float = 0.9):
    """A fully connected LIF net: 784-512-256-10."""
    import snnedge
    from torch import nn
    return snnedge.sequential(
        nn.Flatten(), nn.Linear(784, 512), snnedge.LIF(beta=beta), nn.Linear(512, 256),
        snnedge.LIF(beta=beta), nn.Linear(256, 10), input_shape=(1, 28, 28))


def zoo_net(member: str):
    """The builder of a LIF net with the architecture of conversion-zoo member ``member``
    (examples/benchmarks/zoo.py, a plain ``nn.Sequential``): each ``nn.ReLU`` becomes a LIF
    neuron and each BatchNorm is left out (a ``SpikingNetwork`` does not train BatchNorm; a
    converted one folds it into the convolution); every other module (Dropout, pooling, max
    pooling of spikes, the readout) stays as it is.

    Weights start from He initialization (``kaiming_normal_``, fan-in, ReLU gain; He et al.,
    ICCV 2015, arXiv:1502.01852) instead of torch's default, which is sqrt(6) times smaller:
    without BatchNorm, torch's default leaves the deeper LIF layers of these nets silent at
    the start (allconv_strided: rates 1.8%, 0.14%, 0, 0 on 200 test digits at T = 8; vgg_wide256
    likewise), so no gradient reaches them and neither side learns."""
    def build(beta: float = 0.9):
        import snnedge
        from torch import nn
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import zoo
        ann = zoo.build(member)
        if not isinstance(ann, nn.Sequential):
            raise ValueError(f"zoo member {member} is not an nn.Sequential; zoo_net takes those only.")
        for m in ann.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        return snnedge.sequential(*[snnedge.LIF(beta=beta) if isinstance(m, nn.ReLU) else m
                                    for m in ann if not isinstance(m, nn.modules.batchnorm._BatchNorm)],
                                  input_shape=(1, 28, 28))
    build.__doc__ = f"Zoo member {member}'s architecture, each ReLU a LIF neuron, no BatchNorm."
    return build


# --net: the networks both sides can train (snnTorch's twin of any of them: generic_snntorch_net).
# The zoo_* ones are conversion-zoo architectures (issue 11) trained as LIF nets, without their
# BatchNorm layers (zoo_net); the members with max pooling or branches are not sequences of
# modules a SpikingNetwork trains.
NETS = {"acceptance": acceptance_net, "lif_heldout": lif_heldout_net, "lif_vgg": lif_vgg_net,
        "lif_mlp": lif_mlp_net, **{f"zoo_{m}": zoo_net(m) for m in
                                   ("lenet_w8", "mlp_dropout", "vgg_wide256", "allconv_strided")}}


def generic_snntorch_net(name: str, state: dict, beta: float = 0.9):
    """snnTorch's twin of ``NETS[name]``: the same synaptic modules and weights, each snnedge
    LIF replaced by ``snn.Leaky`` (arctan surrogate, alpha 2), run one step per call."""
    import snntorch as snn
    import torch
    from snntorch import surrogate
    from torch import nn

    import snnedge
    ours = NETS[name](beta)
    ours.load_state_dict(state)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            layers = []
            for node in ours.nodes:
                m = node.module
                layers.append(snn.Leaky(beta=beta, spike_grad=surrogate.atan(alpha=2.0))
                              if isinstance(m, snnedge.LIF) else m)
            self.layers = nn.ModuleList(layers)

        def forward(self, x, steps):
            mems = [m.init_leaky() if isinstance(m, snn.Leaky) else None for m in self.layers]
            out = []
            for _ in range(steps):
                h = x
                for i, m in enumerate(self.layers):
                    if mems[i] is not None:
                        h, mems[i] = m(h, mems[i])
                    else:
                        h = m(h)
                out.append(h)
            return torch.stack(out)
    return Net()


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
class _Lockstep:
    """Batches of ``(x, y)`` handed out one at a time when the parent says ``go`` on stdin.

    The time from handing out a batch to being asked for the next one is that batch's
    training step (the whole of fit's loop for it); it is reported as ``T <seconds>``.
    """

    def __init__(self, x, y, batch_size: int):
        self.x, self.y, self.batch_size = x, y, batch_size

    def __len__(self) -> int:
        return -(-self.x.shape[0] // self.batch_size)

    def __iter__(self):
        for i in range(0, self.x.shape[0], self.batch_size):
            _wait_for_go()
            start = time.perf_counter()
            yield self.x[i:i + self.batch_size], self.y[i:i + self.batch_size]
            _report(time.perf_counter() - start)


def _wait_for_go() -> None:
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("benchmark parent went away")


def _report(seconds: float) -> None:
    print(f"T {seconds:.6f}", flush=True)


def _side_snnedge(data: dict, state: dict, args) -> dict:
    from peak_memory import step_peak_memory
    from snnedge.training import evaluate, fit
    x, y, xt, yt = data["x"], data["y"], data["x_test"], data["y_test"]
    fold = args.side != "snnedge-nofold"
    layout = args.side != "snnedge-nchw"
    warm = NETS[args.net]()
    fit(warm, (x[:2 * args.batch_size], y[:2 * args.batch_size]), epochs=1, timesteps=args.timesteps,
        batch_size=args.batch_size, progress=False, fold_pooling=fold, channels_last=layout)
    net = NETS[args.net]()
    net.load_state_dict(state)
    print("READY", flush=True)
    hist = fit(net, _Lockstep(x, y, args.batch_size), epochs=1, timesteps=args.timesteps,
               lr=args.lr, progress=False, fold_pooling=fold, channels_last=layout)
    result = {"train_loss": hist.loss[0], "train_accuracy": hist.accuracy[0],
              "test_accuracy": evaluate(net, (xt, yt), args.timesteps)["accuracy"]}
    xb, yb = x[:args.batch_size], y[:args.batch_size]
    for steps in () if args.no_memory else (8, 64):
        for mode in ("full", "checkpoint", "truncated"):
            result[f"peak_mib_T{steps}_{mode}"] = step_peak_memory(
                net, xb, yb, steps, bptt=mode, block_steps=8, fold_pooling=fold,
                channels_last=layout) / 2**20
    return result


def _side_snntorch(data: dict, state: dict, args) -> dict:
    import snntorch
    import torch
    import torch.nn.functional as F
    from peak_memory import measure_peak_memory
    x, y, xt, yt = data["x"], data["y"], data["x_test"], data["y_test"]
    steps, bs = args.timesteps, args.batch_size

    def train_step(net, opt, xb, yb, t):
        out = net(xb, t)
        loss = F.cross_entropy(out.mean(0), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach()), int((out.detach().sum(0).argmax(-1) == yb).sum())

    twin = (snntorch_net if args.net == "acceptance"
            else lambda st: generic_snntorch_net(args.net, st))
    warm = twin(state)
    warm_opt = torch.optim.Adam(warm.parameters(), lr=args.lr)
    for i in range(2):
        train_step(warm, warm_opt, x[i * bs:(i + 1) * bs], y[i * bs:(i + 1) * bs], steps)
    net = twin(state)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    net.train()
    print("READY", flush=True)
    total, correct = 0.0, 0
    for xb, yb in _Lockstep(x, y, bs):
        loss, c = train_step(net, opt, xb, yb, steps)
        total += loss * xb.shape[0]
        correct += c
    with torch.no_grad():
        pred = torch.cat([net(xt[i:i + 256], steps).sum(0).argmax(-1) for i in range(0, xt.shape[0], 256)])
    result = {"train_loss": total / x.shape[0], "train_accuracy": correct / x.shape[0],
              "test_accuracy": float((pred == yt).float().mean()), "snntorch": snntorch.__version__}
    for t in () if args.no_memory else (8, 64):
        fresh = twin(state)
        fresh_opt = torch.optim.Adam(fresh.parameters(), lr=args.lr)
        _, peak = measure_peak_memory(train_step, fresh, fresh_opt, x[:bs], y[:bs], t)
        result[f"peak_mib_T{t}_full"] = peak / 2**20
    return result


def _child(args) -> None:
    import torch
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(REPO))
    work = Path(args.work)
    data = torch.load(work / "data.pt", weights_only=True)
    state = torch.load(work / "init.pt", weights_only=True)
    result = (_side_snntorch if args.side == "snntorch" else _side_snnedge)(data, state, args)
    result.update(side=args.side, torch=torch.__version__, threads=torch.get_num_threads())
    print("RESULT " + json.dumps(result), flush=True)


def _start_side(python: str, side: str, work: Path, args) -> subprocess.Popen:
    cmd = [python, __file__, "--side", side, "--work", str(work), "--timesteps", str(args.timesteps),
           "--batch-size", str(args.batch_size), "--threads", str(args.threads), "--lr", str(args.lr),
           "--net", args.net] + (["--no-memory"] if args.no_memory else [])
    env = dict(os.environ)
    if args.omp_wait_policy != "unset":
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy.upper()
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                            cwd=REPO, bufsize=1)


def _expect(proc: subprocess.Popen, side: str, prefix: str) -> str:
    while True:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {side} side stopped (exit code {proc.wait()}); run it alone "
                               f"to see its error")
        if line.startswith(prefix):
            return line[len(prefix):].strip()


def _lockstep_epoch(sides, work: Path, args, n_batches: int) -> dict:
    """One epoch per side, batch by batch in turn (the order rotates every batch), so that
    every side meets the same machine load; returns each side's seconds per batch."""
    procs = {side: _start_side(python, side, work, args) for side, python in sides}
    for side, proc in procs.items():
        _expect(proc, side, "READY")
    times = {side: [] for side in procs}
    names = list(procs)
    for i in range(n_batches):
        for side in names[i % len(names):] + names[:i % len(names)]:
            procs[side].stdin.write("go\n")
            procs[side].stdin.flush()
            times[side].append(float(_expect(procs[side], side, "T ")))
    results = {}
    for side, proc in procs.items():
        results[side] = json.loads(_expect(proc, side, "RESULT "))
        results[side]["batch_s"] = times[side]
        proc.stdin.close()
        proc.wait()
    return results


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--timesteps", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--lr", type=float, default=4e-3)
    p.add_argument("--train-samples", type=int, default=5000)
    p.add_argument("--test-samples", type=int, default=2000)
    p.add_argument("--peers-python", default=DEFAULT_PEERS_PYTHON)
    p.add_argument("--omp-wait-policy", default="passive", choices=["passive", "active", "unset"],
                   help="set for every side; 'passive' keeps OpenMP threads from spinning on a "
                        "shared machine, where spinning threads slow small operators 30-100x")
    p.add_argument("--quick", action="store_true", help="256 samples: a smoke test")
    p.add_argument("--net", default="acceptance", choices=sorted(NETS),
                   help="the network both sides train (default: the acceptance network)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurements")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--side", choices=["snnedge", "snnedge-nofold", "snnedge-nchw", "snntorch"],
                   help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.side:
        return _child(args)
    if args.quick:
        args.train_samples, args.test_samples = 256, 256

    sys.path.insert(0, str(REPO))
    import torch
    from snnedge.datasets import load_mnist_digits, load_mnist_test
    x, y = load_mnist_digits()
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))[:args.train_samples]
    xt, yt = load_mnist_test()
    torch.manual_seed(0)
    init = NETS[args.net]().state_dict()
    sides = (("snnedge", sys.executable), ("snnedge-nofold", sys.executable),
             ("snnedge-nchw", sys.executable), ("snntorch", args.peers_python))
    n_batches = -(-args.train_samples // args.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        torch.save({"x": x[order], "y": y[order], "x_test": xt[:args.test_samples],
                    "y_test": yt[:args.test_samples]}, work / "data.pt")
        torch.save(init, work / "init.pt")
        runs = _lockstep_epoch(sides, work, args, n_batches)
    epoch = {side: sum(r["batch_s"]) for side, r in runs.items()}
    median = {side: sorted(r["batch_s"])[len(r["batch_s"]) // 2] for side, r in runs.items()}
    summary = {"net": args.net, "timesteps": args.timesteps, "batch_size": args.batch_size,
               "threads": args.threads,
               "train_samples": args.train_samples, "omp_wait_policy": args.omp_wait_policy,
               "epoch_s": epoch, "median_batch_s": median,
               "speedup": epoch["snntorch"] / epoch["snnedge"],
               "speedup_nofold": epoch["snntorch"] / epoch["snnedge-nofold"],
               "speedup_nchw": epoch["snntorch"] / epoch["snnedge-nchw"],
               "peak_mib": {side: {k: v for k, v in r.items() if k.startswith("peak_mib")}
                            for side, r in runs.items()},
               "runs": runs}
    for side, r in runs.items():
        print(f"{side:14s} epoch {epoch[side]:6.1f} s (median batch {1000 * median[side]:6.1f} ms)  "
              f"train acc {r['train_accuracy']:.4f}  test acc {r['test_accuracy']:.4f}")
    print(f"\nseconds per epoch ({args.train_samples} samples, T={args.timesteps}, batch "
          f"{args.batch_size}, {args.threads} threads, batches in lockstep): snnedge "
          f"{epoch['snnedge']:.1f}, snnTorch {epoch['snntorch']:.1f} -> snnedge is "
          f"{summary['speedup']:.2f}x faster ({summary['speedup_nofold']:.2f}x without folding the "
          f"pooling: {epoch['snnedge-nofold']:.1f} s; {summary['speedup_nchw']:.2f}x with torch's "
          f"default layout instead of channels-last: {epoch['snnedge-nchw']:.1f} s)")
    print("peak memory of one training step (MiB):")
    for side, m in summary["peak_mib"].items():
        print(f"  {side:14s} " + "  ".join(f"{k[9:]}={v:.1f}" for k, v in sorted(m.items())))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
