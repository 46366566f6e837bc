"""PyTorch eager peer of `cargo bench --bench train`: the same decoders, the same step.

Pre-LN blocks, LayerNorm, GELU MLP (d_ff = 4d), rotary embeddings (rotate_half),
tied embeddings, no biases, byte vocabulary (259), explicit softmax attention (as
sinkscope computes it, so probabilities exist), AdamW (0.9, 0.95, wd 0.1), global
gradient clipping at 1.0, batch 16, float32, CPU.

Run: python benches/torch_peer.py [--sdpa]   (needs torch; prints tokens/s per model;
--sdpa adds the d256 model with PyTorch's fused attention, which hides probabilities)
"""
import math
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

V = 259


def rope_tables(t, d, base=10000.0):
    inv = 1.0 / (base ** (torch.arange(0, d, 2).float() / d))
    ang = torch.outer(torch.arange(t).float(), inv)
    return ang.cos(), ang.sin()


def rotate(x, cos, sin):
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)


class Block(nn.Module):
    def __init__(self, d, heads, sdpa):
        super().__init__()
        self.h, self.dh, self.sdpa = heads, d // heads, sdpa
        self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d, bias=False) for _ in range(4))
        self.up, self.down = nn.Linear(d, 4 * d, bias=False), nn.Linear(4 * d, d, bias=False)

    def forward(self, x, cos, sin, mask):
        b, t, d = x.shape
        h = self.n1(x)
        sh = lambda y: y.view(b, t, self.h, self.dh).transpose(1, 2)
        q, k, v = rotate(sh(self.q(h)), cos, sin), rotate(sh(self.k(h)), cos, sin), sh(self.v(h))
        if self.sdpa:
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            s = q @ k.transpose(-1, -2) / math.sqrt(self.dh) + mask
            a = s.softmax(-1) @ v
        x = x + self.o(a.transpose(1, 2).reshape(b, t, d))
        return x + self.down(F.gelu(self.up(self.n2(x))))


class Lm(nn.Module):
    def __init__(self, d, layers, heads, t, sdpa=False):
        super().__init__()
        self.emb = nn.Embedding(V, d)
        self.blocks = nn.ModuleList(Block(d, heads, sdpa) for _ in range(layers))
        self.norm = nn.LayerNorm(d)
        cos, sin = rope_tables(t, d // heads)
        self.register_buffer("cos", cos)
        self.register_buffer("sin", sin)
        self.register_buffer("mask", torch.full((t, t), float("-inf")).triu(1))

    def forward(self, ids):
        x = self.emb(ids)
        for blk in self.blocks:
            x = blk(x, self.cos, self.sin, self.mask)
        return self.norm(x) @ self.emb.weight.T


def bench(name, d, layers, heads, t, batch=16, steps=20, warmup=5, sdpa=False):
    torch.manual_seed(0)
    m = Lm(d, layers, heads, t, sdpa)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    ids = torch.randint(0, 256, (batch, t + 1))

    def step():
        logits = m(ids[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, V), ids[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()

    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    med, best = statistics.median(times), min(times)
    print(f"{name}{' (sdpa)' if sdpa else ''}: {batch * t / med:,.0f} tokens/s "
          f"(median step {med * 1e3:.1f} ms, fastest {best * 1e3:.1f} ms over {steps}, "
          f"threads {torch.get_num_threads()})")


if __name__ == "__main__":
    print(f"torch {torch.__version__}", file=sys.stderr)
    bench("quick_d64_l2_t64", 64, 2, 4, 64, steps=50)
    bench("d256_l6_h8_t128", 256, 6, 8, 128)
    if "--sdpa" in sys.argv:
        bench("d256_l6_h8_t128", 256, 6, 8, 128, sdpa=True)
