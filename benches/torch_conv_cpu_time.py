"""PyTorch's counterpart of benches/conv_cpu_time.rs: process CPU time of conv3x3 forward and
forward+backward (x and w gradients) on the anchor shapes, with a chosen number of threads.

    python benches/torch_conv_cpu_time.py THREADS
"""
import sys
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
for n, ci, co, hw in [(8, 64, 64, 64), (8, 128, 128, 32), (8, 32, 32, 128), (16, 256, 256, 16), (8, 5, 64, 64)]:
    x = torch.randn(n, ci, hw, hw, requires_grad=True)
    w = torch.randn(co, ci, 3, 3, requires_grad=True)
    g = torch.randn(n, co, hw, hw)
    flops = 2 * n * co * ci * 9 * hw * hw

    def measure(f, reps=6):
        f()
        c, t = time.process_time(), time.perf_counter()
        for _ in range(reps):
            f()
        return (time.process_time() - c) / reps * 1e3, (time.perf_counter() - t) / reps * 1e3

    c1, t1 = measure(lambda: F.conv2d(x, w, padding=1))
    c3, t3 = measure(lambda: F.conv2d(x, w, padding=1).backward(g))
    print(f"({n},{ci},{co},{hw}) fwd cpu {c1:7.2f} ms wall {t1:7.2f} ms {flops / c1 / 1e6:6.1f} GFLOP/cpu-s"
          f" | fwd+bwd cpu {c3:7.2f} ms wall {t3:7.2f} ms", flush=True)
print("torch", torch.__version__, "threads", torch.get_num_threads())
