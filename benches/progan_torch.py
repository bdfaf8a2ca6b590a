"""PyTorch timing of one Progressive GAN training step at the configuration of
benches/progan_step.rs: 64x64x5 at the final level, latent 128, fmap_base 1024, fmap_max 64,
batch 16; D step (WGAN-GP: critic loss, gradient penalty lambda 10 by double backward, drift
0.001; Adam lr 1e-3, betas (0, 0.99)), G step (Adam), G_ema update (beta 0.999).

The networks are NVlabs' G_paper / D_paper (progressive_growing_of_gans, TensorFlow) written in
PyTorch for this timing: equalised lr, pixel norm, leaky ReLU 0.2, nearest up-sampling, average
pooling, minibatch stddev (group 4). Usage (a CPU PyTorch in a venv outside the project):
    python benches/progan_torch.py [threads] [steps]
prints the median and the quartiles of the step time in ms.
"""

import copy
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

LATENT, RES, CH, FMAP_BASE, FMAP_MAX, BATCH = 128, 64, 5, 1024, 64, 16


def nf(stage):
    return min(FMAP_BASE >> stage, FMAP_MAX)


class EqConv(nn.Module):
    def __init__(self, cin, cout, k, gain=math.sqrt(2.0)):
        super().__init__()
        self.w = nn.Parameter(torch.randn(cout, cin, k, k))
        self.b = nn.Parameter(torch.zeros(cout))
        self.scale = gain / math.sqrt(cin * k * k)
        self.pad = k // 2

    def forward(self, x):
        return F.conv2d(x, self.w * self.scale, self.b, padding=self.pad)


class EqDense(nn.Module):
    def __init__(self, fin, fout, gain=math.sqrt(2.0), bias=True):
        super().__init__()
        self.w = nn.Parameter(torch.randn(fout, fin))
        self.b = nn.Parameter(torch.zeros(fout)) if bias else None
        self.scale = gain / math.sqrt(fin)

    def forward(self, x):
        return F.linear(x, self.w * self.scale, self.b)


def pn(x):
    return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


def lrelu(x):
    return F.leaky_relu(x, 0.2)


class G(nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = EqDense(LATENT, nf(1) * 16, gain=math.sqrt(2.0) / 4, bias=False)
        self.dense_b = nn.Parameter(torch.zeros(nf(1)))
        self.conv4 = EqConv(nf(1), nf(1), 3)
        self.blocks = nn.ModuleList()
        top = int(math.log2(RES)) - 2
        for level in range(1, top + 1):
            self.blocks.append(nn.ModuleList([EqConv(nf(level), nf(level + 1), 3),
                                              EqConv(nf(level + 1), nf(level + 1), 3)]))
        self.torgb = EqConv(nf(top + 1), CH, 1, gain=1.0)

    def forward(self, z):
        x = self.dense(pn(z)).view(-1, nf(1), 4, 4) + self.dense_b.view(1, -1, 1, 1)
        x = pn(lrelu(x))
        x = pn(lrelu(self.conv4(x)))
        for c0, c1 in self.blocks:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = pn(lrelu(c0(x)))
            x = pn(lrelu(c1(x)))
        return self.torgb(x)


def mbstd(x, group=4):
    g = min(group, x.shape[0])
    s = x.shape
    y = x.view(g, -1, s[1], s[2], s[3])
    y = y - y.mean(dim=0, keepdim=True)
    y = torch.sqrt(y.pow(2).mean(dim=0) + 1e-8).mean(dim=[1, 2, 3]).view(-1, 1, 1, 1)
    return torch.cat([x, y.repeat(g, 1, s[2], s[3])], dim=1)


class D(nn.Module):
    def __init__(self):
        super().__init__()
        top = int(math.log2(RES)) - 2
        self.fromrgb = EqConv(CH, nf(top + 1), 1)
        self.blocks = nn.ModuleList()
        for level in range(top, 0, -1):
            self.blocks.append(nn.ModuleList([EqConv(nf(level + 1), nf(level + 1), 3),
                                              EqConv(nf(level + 1), nf(level), 3)]))
        self.conv4 = EqConv(nf(1) + 1, nf(1), 3)
        self.dense0 = EqDense(nf(1) * 16, nf(0))
        self.dense1 = EqDense(nf(0), 1, gain=1.0)

    def forward(self, x):
        x = lrelu(self.fromrgb(x))
        for c0, c1 in self.blocks:
            x = F.avg_pool2d(lrelu(c1(lrelu(c0(x)))), 2)
        x = lrelu(self.conv4(mbstd(x)))
        return self.dense1(lrelu(self.dense0(x.flatten(1))))


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    g, d = G(), D()
    g_ema = copy.deepcopy(g).requires_grad_(False)
    g_opt = torch.optim.Adam(g.parameters(), lr=1e-3, betas=(0.0, 0.99), eps=1e-8)
    d_opt = torch.optim.Adam(d.parameters(), lr=1e-3, betas=(0.0, 0.99), eps=1e-8)
    reals = torch.rand(BATCH, CH, RES, RES) * 2 - 1

    def step():
        # D
        z = torch.randn(BATCH, LATENT)
        with torch.no_grad():
            fakes = g(z)
        d_opt.zero_grad(set_to_none=True)
        real_s, fake_s = d(reals), d(fakes)
        u = torch.rand(BATCH, 1, 1, 1)
        mixed = (reals + (fakes - reals) * u).requires_grad_(True)
        (grad,) = torch.autograd.grad(d(mixed).sum(), mixed, create_graph=True)
        gp = 10.0 * (grad.pow(2).sum(dim=[1, 2, 3]).sqrt() - 1.0).pow(2).mean()
        loss = fake_s.mean() - real_s.mean() + gp + 0.001 * real_s.pow(2).mean()
        loss.backward()
        d_opt.step()
        # G
        g_opt.zero_grad(set_to_none=True)
        (-d(g(torch.randn(BATCH, LATENT))).mean()).backward()
        g_opt.step()
        with torch.no_grad():
            for pe, p in zip(g_ema.parameters(), g.parameters()):
                pe.copy_(p.lerp(pe, 0.999))

    for _ in range(3):
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    q = lambda f: times[min(len(times) - 1, int(f * len(times)))]
    print(f"progan step 64x64 b{BATCH} threads {threads}: median {q(0.5):.1f} ms "
          f"(quartiles {q(0.25):.1f} .. {q(0.75):.1f}, {steps} steps)")


if __name__ == "__main__":
    main()
