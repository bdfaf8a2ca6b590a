"""PyTorch's counterpart of `BRAINSYNTH_PROFILE=1 cargo bench --bench unet_step`: the anchor
script's plain U-Net (batch 8, 64x64, widths 32-64-128-256, instance norm + leaky ReLU, Adam),
one training step timed by wall clock and by process CPU time, then PyTorch's profiler table
of CPU time per op, for a side-by-side reading with our per-kernel table.

    python benches/torch_unet_step_profile.py [THREADS]     # default 2
"""
import sys
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
torch.manual_seed(0)


class Block(torch.nn.Module):
    def __init__(self, ci, co):
        super().__init__()
        self.c1 = torch.nn.Conv2d(ci, co, 3, padding=1)
        self.n1 = torch.nn.InstanceNorm2d(co, affine=True)
        self.c2 = torch.nn.Conv2d(co, co, 3, padding=1)
        self.n2 = torch.nn.InstanceNorm2d(co, affine=True)

    def forward(self, x):
        x = F.leaky_relu(self.n1(self.c1(x)), 0.01)
        return F.leaky_relu(self.n2(self.c2(x)), 0.01)


class UNet(torch.nn.Module):
    def __init__(self, ci=4, nc=4, widths=(32, 64, 128, 256)):
        super().__init__()
        self.down, self.up, self.upc = torch.nn.ModuleList(), torch.nn.ModuleList(), torch.nn.ModuleList()
        c = ci
        for f in widths:
            self.down.append(Block(c, f))
            c = f
        for f in reversed(widths[:-1]):
            self.upc.append(torch.nn.ConvTranspose2d(c, f, 2, stride=2))
            self.up.append(Block(2 * f, f))
            c = f
        self.head = torch.nn.Conv2d(c, nc, 1)

    def forward(self, x):
        skips = []
        for i, b in enumerate(self.down):
            x = b(x)
            if i < len(self.down) - 1:
                skips.append(x)
                x = F.max_pool2d(x, 2)
        for uc, b in zip(self.upc, self.up):
            x = b(torch.cat([uc(x), skips.pop()], 1))
        return self.head(x)


net = UNet()
opt = torch.optim.Adam(net.parameters(), 1e-3)
xb, yb = torch.randn(8, 4, 64, 64), torch.randint(0, 4, (8, 64, 64))


def step():
    loss = F.cross_entropy(net(xb), yb)
    opt.zero_grad()
    loss.backward()
    opt.step()


for _ in range(3):
    step()
reps = 10
c, t = time.process_time(), time.perf_counter()
for _ in range(reps):
    step()
cpu, wall = (time.process_time() - c) / reps * 1e3, (time.perf_counter() - t) / reps * 1e3
print(f"unet_step b8 64x64 (32-64-128-256) Adam: wall {wall:.1f} ms, process CPU {cpu:.1f} ms per step")
with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
    for _ in range(5):
        step()
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18))
print("torch", torch.__version__, "threads", torch.get_num_threads())
