#!/usr/bin/python3
# PyTorch CPU reference for scripts/bench_cpu.sh: trains the same GPT-2 as
# pipetrain's CPU backend (pre-LN blocks, causal softmax attention, GELU tanh,
# tied head, fp32) with the same step structure (m-way gradient accumulation,
# global-norm clipping, AdamW with decay on matrices only, cosine lr with
# warm-up) and prints the median training tokens/s over the timed steps.
# Written against torch 1.13 (Debian python3-torch), so no
# F.scaled_dot_product_attention: attention is the explicit softmax(QKᵀ)V, the
# same math pipetrain computes.
import argparse
import glob
import json
import math
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, C, NH):
        super().__init__()
        self.NH = NH
        self.ln_1 = nn.LayerNorm(C)
        self.c_attn = nn.Linear(C, 3 * C)
        self.attn_proj = nn.Linear(C, C)
        self.ln_2 = nn.LayerNorm(C)
        self.c_fc = nn.Linear(C, 4 * C)
        self.mlp_proj = nn.Linear(4 * C, C)

    def attention(self, x, mask):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        hs = C // self.NH
        q = q.view(B, T, self.NH, hs).transpose(1, 2)
        k = k.view(B, T, self.NH, hs).transpose(1, 2)
        v = v.view(B, T, self.NH, hs).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
        att = att.masked_fill(mask[:T, :T], float("-inf"))
        att = F.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.attn_proj(y)

    def forward(self, x, mask):
        x = x + self.attention(self.ln_1(x), mask)
        x = x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))
        return x


class GPT(nn.Module):
    def __init__(self, V, maxT, L, C, NH):
        super().__init__()
        self.wte = nn.Embedding(V, C)
        self.wpe = nn.Embedding(maxT, C)
        self.blocks = nn.ModuleList([Block(C, NH) for _ in range(L)])
        self.ln_f = nn.LayerNorm(C)
        # Upper triangle (future positions) is masked; built once like a buffer.
        self.register_buffer("mask", torch.triu(torch.ones(maxT, maxT, dtype=torch.bool), diagonal=1))
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * L) if name.endswith("proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx, targets):
        B, T = idx.shape
        pos = torch.arange(T, dtype=torch.long)
        x = self.wte(idx) + self.wpe(pos)
        for blk in self.blocks:
            x = blk(x, self.mask)
        logits = F.linear(self.ln_f(x), self.wte.weight)  # tied head
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def load_tokens(pattern):
    """Tokens of the first llm.c shard matching pattern (header: 256 int32, then uint16)."""
    files = sorted(glob.glob(pattern)) if pattern else []
    if not files:
        return None
    header = np.fromfile(files[0], dtype=np.int32, count=256)
    if header[0] != 20240520:
        sys.exit(f"torch_cpu_gpt2: {files[0]}: not an llm.c token shard")
    return np.fromfile(files[0], dtype=np.uint16, offset=256 * 4, count=int(header[2])).astype(np.int64)


def lr_at(step, args):
    """pipetrain's cosine schedule with linear warm-up (optim/lr_schedule)."""
    if step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    total = max(args.steps, 1)
    progress = min(1.0, (step - args.warmup_steps) / max(1, total - args.warmup_steps))
    min_lr = args.lr * args.min_lr_ratio
    return min_lr + 0.5 * (args.lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--vocab", type=int, default=256)
    ap.add_argument("--max-seq-len", type=int, default=128)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--n-embd", type=int, default=128)
    ap.add_argument("-B", type=int, default=8)
    ap.add_argument("-T", type=int, default=128)
    ap.add_argument("-m", type=int, default=8, help="micro-batches (gradient accumulation) per step")
    ap.add_argument("--steps", type=int, default=30, help="optimizer steps in total")
    ap.add_argument("--warmup", type=int, default=5, help="leading steps left out of the median")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr-ratio", type=float, default=0.1)
    ap.add_argument("--warmup-steps", type=int, default=20)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--data", default="", help="llm.c shard glob; random tokens when empty or absent")
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--json", action="store_true", help="print one JSON line instead of text")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = GPT(args.vocab, args.max_seq_len, args.n_layer, args.n_embd, args.n_head)
    # pipetrain decays the matrices (wte included), not biases, LayerNorms or wpe.
    decay = [p for n, p in model.named_parameters() if p.dim() == 2 and not n.startswith("wpe")]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() == 2 and not n.startswith("wpe"))]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr, betas=(0.9, 0.95), eps=1e-8)

    tokens = load_tokens(args.data)
    gen = np.random.default_rng(args.seed)
    B, T, m = args.B, args.T, args.m

    def batch():
        if tokens is None:
            x = torch.from_numpy(gen.integers(0, args.vocab, size=(B, T + 1), dtype=np.int64))
        else:
            starts = gen.integers(0, len(tokens) - T - 1, size=B)
            x = torch.from_numpy(np.stack([tokens[s:s + T + 1] for s in starts]))
        return x[:, :-1].contiguous(), x[:, 1:].contiguous()

    tokens_per_step = B * T * m
    rates, losses = [], []
    for step in range(args.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for _ in range(m):
            x, y = batch()
            loss = model(x, y) / m
            loss.backward()
            loss_sum += loss.item()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args)
        opt.step()
        dt = time.perf_counter() - t0
        losses.append(loss_sum)
        if step >= args.warmup:
            rates.append(tokens_per_step / dt)

    result = {
        "impl": "torch",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "tokens_per_step": tokens_per_step,
        "timed_steps": len(rates),
        "tokens_per_s_median": statistics.median(rates),
        "tokens_per_s_min": min(rates),
        "tokens_per_s_max": max(rates),
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "data": "random" if tokens is None else args.data,
    }
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")


if __name__ == "__main__":
    main()
