"""The event kernel's time right after another event-kernel call, after a pause, and right
after a oneDNN convolution (whose OpenMP threads spin a while before sleeping); the same for
the dense convolution. Conv2d 64 -> 128 3x3 on 200 x 64 x 14 x 14 spikes at 10%, 2 threads,
median of 9. Usage: python examples/benchmarks/thread_contention.py
(``OMP_WAIT_POLICY=PASSIVE`` before it shows the threads that do not spin.)
"""
import torch, time, statistics, sys
from snnedge.dense_paths import apply_synaptic
from snnedge.events import event_conv2d
torch.set_num_threads(2)
conv = torch.nn.Conv2d(64, 128, 3, padding=1, bias=False).eval()
other = torch.nn.Conv2d(64, 64, 3, padding=1, bias=False).eval()
x = (torch.rand(200, 64, 14, 14) < 0.1).float().contiguous(memory_format=torch.channels_last)
def med(f, pre, n=9):
    ts = []
    for _ in range(n):
        pre()
        s = time.perf_counter(); f(); ts.append(time.perf_counter() - s)
    return statistics.median(ts) * 1e3
with torch.no_grad():
    for _ in range(3): event_conv2d(conv, x); apply_synaptic(conv, x)
    print("event after sleep", med(lambda: event_conv2d(conv, x), lambda: time.sleep(0.05)))
    print("event after oneDNN", med(lambda: event_conv2d(conv, x), lambda: apply_synaptic(other, x)))
    print("dense after sleep", med(lambda: apply_synaptic(conv, x), lambda: time.sleep(0.05)))
    print("dense after event", med(lambda: apply_synaptic(conv, x), lambda: event_conv2d(other, x)))
    print("dense after oneDNN", med(lambda: apply_synaptic(conv, x), lambda: apply_synaptic(other, x)))
    print("event after event", med(lambda: event_conv2d(conv, x), lambda: event_conv2d(other, x)))
