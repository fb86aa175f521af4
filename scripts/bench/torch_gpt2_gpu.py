#!/usr/bin/env python3
"""PyTorch GPU reference for scripts/gpu_check.sh: GPT-2 (pre-LN blocks, causal attention,
GELU tanh, tied head) trained with AdamW (weight decay 0.1 on matrices, global-norm clip 1.0)
on random tokens, in bf16 autocast (fp32 master weights and optimizer state) or fp32, eager or
torch.compile. Prints one JSON line: tokens/s (median over the timed steps), peak memory, and
what ran. Same model, batch, sequence length and optimizer as `pipetrain train` with
configs/gpt2_124m.yaml.

    torch_gpt2_gpu.py --batch 32 --seq 1024 --mode compile --dtype bf16 --steps 20 --warmup 5
"""
import argparse
import json
import math
import statistics
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:
    print(json.dumps({"error": f"torch is not installed: {e}"}))
    sys.exit(3)


class Block(nn.Module):
    def __init__(self, C, NH):
        super().__init__()
        self.NH = NH
        self.ln_1, self.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
        self.c_attn, self.attn_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
        self.c_fc, self.mlp_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        heads = [t.view(B, T, self.NH, C // self.NH).transpose(1, 2) for t in (q, k, v)]
        y = F.scaled_dot_product_attention(*heads, is_causal=True)
        x = x + self.attn_proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, V, maxT, L, C, NH):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(V, C), nn.Embedding(maxT, C)
        self.blocks = nn.ModuleList(Block(C, NH) for _ in range(L))
        self.ln_f = nn.LayerNorm(C)
        self.V = V

    def forward(self, idx, targets):
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for b in self.blocks:
            x = b(x)
        logits = self.ln_f(x) @ self.wte.weight.t()  # tied head
        return F.cross_entropy(logits.float().view(-1, self.V), targets.view(-1))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=["eager", "compile"], default="eager")
    p.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    sizes = {"batch": 8, "seq": 1024, "steps": 20, "warmup": 5, "layers": 12, "width": 768, "heads": 12,
             "vocab": 50304}  # GPT-2 124M, V padded to a multiple of 128
    for name, default in sizes.items():
        p.add_argument("--" + name, type=int, default=default)
    a = p.parse_args()
    if a.steps <= a.warmup:
        sys.exit("--steps must exceed --warmup")
    if not torch.cuda.is_available():
        print(json.dumps({"error": "torch sees no CUDA device"}))
        sys.exit(4)
    torch.manual_seed(1337)
    dev = "cuda"
    model = GPT(a.vocab, a.seq, a.layers, a.width, a.heads).to(dev)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and n != "wpe.weight"]
    other = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and n != "wpe.weight")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                            lr=6e-4, betas=(0.9, 0.95), eps=1e-8, fused=True)
    fwd = torch.compile(model) if a.mode == "compile" else model
    x = torch.randint(0, 50257, (a.batch, a.seq), device=dev)
    y = torch.randint(0, 50257, (a.batch, a.seq), device=dev)
    times = []
    for step in range(a.steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=a.dtype == "bf16"):
            loss = fwd(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if step >= a.warmup:
            times.append(time.perf_counter() - t0)
    tok_s = a.batch * a.seq / statistics.median(times)
    print(json.dumps({"impl": f"torch-{a.mode}", "dtype": a.dtype, "batch": a.batch, "seq": a.seq,
                      "tokens_per_s": round(tok_s, 1), "peak_mem_bytes": torch.cuda.max_memory_allocated(),
                      "final_loss": float(loss), "torch": torch.__version__,
                      "device": torch.cuda.get_device_name(0)}))


if __name__ == "__main__":
    main()
