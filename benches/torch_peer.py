"""PyTorch eager peer of `cargo bench --bench train`: the same decoders, the same step.

Pre-LN blocks, LayerNorm, GELU MLP (d_ff = 4d), rotary embeddings (rotate_half),
tied embeddings, no biases, byte vocabulary (259), explicit softmax attention (as
sinkscope computes it, so probabilities exist), AdamW (0.9, 0.95, wd 0.1), global
gradient clipping at 1.0, batch 16, float32, CPU.

Run: python benches/torch_peer.py [--sdpa] [--device cuda] [--gu60m]
(needs torch; prints tokens/s per model; --sdpa adds the d256 model with PyTorch's
fused attention, which hides probabilities; --device runs on that torch device;
--gu60m adds `recipes/gu-60m.toml`'s model instead: RMSNorm, SwiGLU MLP of 1,536,
untied head, vocabulary 50,432, T 512, micro-batch 16 — the GPU comparison of
issue 17, run by `scripts/gpu-check.sh`)
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


class RmsNorm(nn.Module):
    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.w, self.eps = nn.Parameter(torch.ones(d)), eps

    def forward(self, x):
        return self.w * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)


class Mlp(nn.Module):
    """GELU MLP of 4d, or (llama) SwiGLU of d_ff."""

    def __init__(self, d, llama, d_ff):
        super().__init__()
        self.llama = llama
        ff = d_ff if llama else 4 * d
        self.up, self.down = nn.Linear(d, ff, bias=False), nn.Linear(ff, d, bias=False)
        self.gate = nn.Linear(d, ff, bias=False) if llama else None

    def forward(self, x):
        if self.llama:
            return self.down(F.silu(self.gate(x)) * self.up(x))
        return self.down(F.gelu(self.up(x)))


class Block(nn.Module):
    def __init__(self, d, heads, sdpa, llama=False, d_ff=0):
        super().__init__()
        self.h, self.dh, self.sdpa = heads, d // heads, sdpa
        norm = (lambda: RmsNorm(d)) if llama else (lambda: nn.LayerNorm(d))
        self.n1, self.n2 = norm(), norm()
        self.q, self.k, self.v, self.o = (nn.Linear(d, d, bias=False) for _ in range(4))
        self.mlp = Mlp(d, llama, d_ff)

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
        return x + self.mlp(self.n2(x))


class Lm(nn.Module):
    def __init__(self, d, layers, heads, t, sdpa=False, vocab=V, llama=False, d_ff=0):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(Block(d, heads, sdpa, llama, d_ff) for _ in range(layers))
        self.norm = RmsNorm(d) if llama else nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False) if llama else None
        cos, sin = rope_tables(t, d // heads)
        self.register_buffer("cos", cos)
        self.register_buffer("sin", sin)
        self.register_buffer("mask", torch.full((t, t), float("-inf")).triu(1))

    def forward(self, ids):
        x = self.emb(ids)
        for blk in self.blocks:
            x = blk(x, self.cos, self.sin, self.mask)
        x = self.norm(x)
        return self.head(x) if self.head is not None else x @ self.emb.weight.T


def bench(name, d, layers, heads, t, batch=16, steps=20, warmup=5, sdpa=False,
          device="cpu", vocab=V, llama=False, d_ff=0):
    torch.manual_seed(0)
    m = Lm(d, layers, heads, t, sdpa, vocab, llama, d_ff).to(device)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    ids = torch.randint(0, 256 if vocab == V else vocab, (batch, t + 1), device=device)
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)

    def step():
        logits = m(ids[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, vocab), ids[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()

    for _ in range(warmup):
        step()
    sync()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    med, best = statistics.median(times), min(times)
    print(f"{name}{' (sdpa)' if sdpa else ''} on {device}: {batch * t / med:,.0f} tokens/s "
          f"(median step {med * 1e3:.1f} ms, fastest {best * 1e3:.1f} ms over {steps}, "
          f"threads {torch.get_num_threads()})")


def option(flag, default):
    return sys.argv[sys.argv.index(flag) + 1] if flag in sys.argv else default


if __name__ == "__main__":
    print(f"torch {torch.__version__}", file=sys.stderr)
    device = option("--device", "cpu")
    if "--gu60m" in sys.argv:
        batch, steps = int(option("--batch", "16")), int(option("--steps", "20"))
        bench("gu60m_d768_l10_h8_t512", 768, 10, 8, 512, batch=batch, steps=steps,
              warmup=min(5, steps), device=device, vocab=50432, llama=True, d_ff=1536)
        for sdpa in ([True] if "--sdpa" in sys.argv else []):
            bench("gu60m_d768_l10_h8_t512", 768, 10, 8, 512, batch=batch, steps=steps,
                  warmup=min(5, steps), sdpa=sdpa, device=device, vocab=50432, llama=True,
                  d_ff=1536)
        sys.exit(0)
    bench("quick_d64_l2_t64", 64, 2, 4, 64, steps=50, device=device)
    bench("d256_l6_h8_t128", 256, 6, 8, 128, device=device)
    if "--sdpa" in sys.argv:
        bench("d256_l6_h8_t128", 256, 6, 8, 128, sdpa=True, device=device)
