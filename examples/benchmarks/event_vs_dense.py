"""dense / event time of single layers on random spikes (800 rows, channels-last): 1x1 and
narrow 3x3 convolutions, which the fitted break-even rule keeps dense or puts low.
Usage: python examples/benchmarks/event_vs_dense.py THREADS
"""
import torch, time, statistics, sys
from snnedge.dense_paths import apply_synaptic
from snnedge.events import event_conv2d
torch.set_num_threads(int(sys.argv[1]))
def med(f, n=5):
    f(); ts = []
    for _ in range(n):
        s = time.perf_counter(); f(); ts.append(time.perf_counter() - s)
    return statistics.median(ts) * 1e3
for cin, cout, hw, k in [(128, 32, 14, 1), (32, 128, 14, 1), (64, 64, 14, 1), (256, 64, 7, 1), (16, 16, 28, 3), (32, 32, 14, 3), (64, 64, 14, 3)]:
    conv = torch.nn.Conv2d(cin, cout, k, padding=k // 2, bias=False).eval()
    for d in [0.02, 0.05, 0.12]:
        x = (torch.rand(800, cin, hw, hw) < d).float().contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            td = med(lambda: apply_synaptic(conv, x)); te = med(lambda: event_conv2d(conv, x))
        print(f"{cin}->{cout} {k}x{k} {hw}x{hw} d={d}: dense {td:.1f} ms event {te:.1f} ms dense/event {td/te:.2f}", flush=True)
