"""PyTorch's side of `benches/cpu_kernels.rs` (attention and norm groups) and of
`benches/attn_norm_cpu_time.rs`: wall time (median) and process CPU time per call, forward and
forward+backward, with a chosen number of threads.

Shapes: window attention as `shared/anchors/torch_cpu.py` (windows, heads, tokens, head_dim);
the diffusion U-Net's multi-head attention (guided-diffusion `QKVAttentionLegacy`, written out
here: qkv [B, heads*3*C, T], scale 1/sqrt(sqrt(C)) on q and k) at (B, heads, T, C) of the CPU
anchors' diff32 / diff64 models at 64x64 (attention at 16x16 and 8x8, 4 heads); gn_silu
(N, C, H=W, groups) without affine; affine instance norm (N, C, H=W) as the plain U-Net uses it;
affine layer norm over the last dim (tokens, C) at the Swin segmenter's shapes (`cpu_kernels`'
LAYER_NORM_SHAPES).
Forward+backward asks the gradients of every input that requires grad (x, weight, bias; q, k, v
and the bias for attention; qkv for the legacy attention).

    python benches/torch_attn_norm.py THREADS
"""
import statistics
import sys
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
torch.manual_seed(0)


def measure(f, warm=2, reps=9):
    for _ in range(warm):
        f()
    ts = []
    c = time.process_time()
    for _ in range(reps):
        t = time.perf_counter()
        f()
        ts.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ts), (time.process_time() - c) / reps * 1e3


def row(name, shape, fwd, fb):
    (fw, fc), (bw, bc) = measure(fwd), measure(fb)
    print(f"{name:8} {str(shape):18} fwd wall {fw:8.3f} ms cpu {fc:8.3f} ms | "
          f"fwd+bwd wall {bw:8.3f} ms cpu {bc:8.3f} ms", flush=True)


for nw, h, t, hd in [(128, 3, 64, 32), (32, 6, 64, 32)]:
    q = torch.randn(nw, h, t, hd, requires_grad=True)
    k = torch.randn_like(q, requires_grad=True)
    v = torch.randn_like(q, requires_grad=True)
    b = torch.randn(1, h, t, t, requires_grad=True)
    go = torch.randn_like(q)

    def f():
        return ((q @ k.transpose(-1, -2)) * hd ** -0.5 + b).softmax(-1) @ v

    row("winattn", (nw, h, t, hd), f, lambda: f().backward(go))

for bs, heads, t, ch in [(16, 4, 256, 24), (16, 4, 64, 32), (16, 4, 256, 48), (16, 4, 64, 64)]:
    qkv = torch.randn(bs, heads * 3 * ch, t, requires_grad=True)
    go = torch.randn(bs, heads * ch, t)

    def f():
        q, k, v = qkv.reshape(bs * heads, ch * 3, t).split(ch, dim=1)
        scale = 1 / ch ** 0.25
        w = torch.einsum("bct,bcs->bts", q * scale, k * scale).softmax(-1)
        return torch.einsum("bts,bcs->bct", w, v).reshape(bs, -1, t)

    row("mha", (bs, heads, t, ch), f, lambda: f().backward(go))

for n, c, hw, g in [(8, 128, 64, 32), (8, 256, 32, 32)]:
    x = torch.randn(n, c, hw, hw, requires_grad=True)
    go = torch.randn_like(x)
    row("gn_silu", (n, c, hw, g), lambda: F.silu(F.group_norm(x, g)),
        lambda: F.silu(F.group_norm(x, g)).backward(go))

for n, c, hw in [(8, 32, 64), (8, 256, 8)]:
    x = torch.randn(n, c, hw, hw, requires_grad=True)
    w = torch.randn(c, requires_grad=True)
    b = torch.randn(c, requires_grad=True)
    go = torch.randn_like(x)

    def f():
        return F.instance_norm(x, weight=w, bias=b, eps=1e-5)

    row("instnorm", (n, c, hw), f, lambda: f().backward(go))

for t, c in [(32768, 48), (2048, 384)]:
    x = torch.randn(t, c, requires_grad=True)
    w = torch.randn(c, requires_grad=True)
    b = torch.randn(c, requires_grad=True)
    go = torch.randn_like(x)

    def f():
        return F.layer_norm(x, (c,), weight=w, bias=b, eps=1e-5)

    row("layernorm", (t, c), f, lambda: f().backward(go))

print("torch", torch.__version__, "threads", torch.get_num_threads())
