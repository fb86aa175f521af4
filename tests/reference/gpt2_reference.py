#!/usr/bin/env python3
"""Float64 PyTorch reference of pipetrain's GPT-2 for tests/model/reference_test.cc.

Usage: gpt2_reference.py DIR

Reads from DIR (raw little-endian files written by the C++ test):
  config.txt   lines "key value": vocab_size max_seq_len n_layer n_head n_embd
               tie_embeddings batch seq_len
  params.bin   float32, every tensor of the model in canonical order
               (model/param_layout.h): wte, wpe, per block ln1_w ln1_b qkv_w qkv_b
               attproj_w attproj_b ln2_w ln2_b fc_w fc_b fcproj_w fcproj_b, lnf_w
               lnf_b, lm_head (untied only)
  tokens.bin   int32 (B, T);  targets.bin  int32 (B, T)
Writes to DIR:
  ref_loss.bin   float64, the mean cross-entropy
  ref_grads.bin  float64, d loss / d param for every tensor in the same order
                 (tied: the wte gradient includes the head contribution)

Plain torch ops only (no nn.Module library code), so the reference shares no
code with the implementation under test. Exit code 3: torch is not installed.
"""
import math
import os
import sys

try:
    import numpy as np
    import torch
except ImportError as e:  # the C++ test turns this into a failure with a hint
    print(f"gpt2_reference.py: {e}; run scripts/install_deps.sh to install torch", file=sys.stderr)
    sys.exit(3)

LN_EPS = 1e-5  # model/cpu/layernorm.h kLayerNormEps


def read_config(path):
    cfg = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                k, v = line.split()
                cfg[k] = int(v)
    return cfg


def param_shapes(cfg):
    V, C, L, maxT = cfg["vocab_size"], cfg["n_embd"], cfg["n_layer"], cfg["max_seq_len"]
    shapes = [("wte", (V, C)), ("wpe", (maxT, C))]
    for l in range(L):
        shapes += [
            (f"h{l}.ln1_w", (C,)), (f"h{l}.ln1_b", (C,)),
            (f"h{l}.attn.qkv_w", (3 * C, C)), (f"h{l}.attn.qkv_b", (3 * C,)),
            (f"h{l}.attn.proj_w", (C, C)), (f"h{l}.attn.proj_b", (C,)),
            (f"h{l}.ln2_w", (C,)), (f"h{l}.ln2_b", (C,)),
            (f"h{l}.mlp.fc_w", (4 * C, C)), (f"h{l}.mlp.fc_b", (4 * C,)),
            (f"h{l}.mlp.proj_w", (C, 4 * C)), (f"h{l}.mlp.proj_b", (C,)),
        ]
    shapes += [("lnf_w", (C,)), ("lnf_b", (C,))]
    if not cfg["tie_embeddings"]:
        shapes.append(("lm_head", (V, C)))
    return shapes


def layernorm(x, w, b):
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)  # biased, as GPT-2
    return (x - mean) / torch.sqrt(var + LN_EPS) * w + b


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def gpt2_loss(p, cfg, tokens, targets):
    B, T = tokens.shape
    C, NH, V = cfg["n_embd"], cfg["n_head"], cfg["vocab_size"]
    HS = C // NH
    x = p["wte"][tokens] + p["wpe"][:T].unsqueeze(0)
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for l in range(cfg["n_layer"]):
        h = layernorm(x, p[f"h{l}.ln1_w"], p[f"h{l}.ln1_b"])
        qkv = h @ p[f"h{l}.attn.qkv_w"].T + p[f"h{l}.attn.qkv_b"]
        q, k, v = qkv.split(C, dim=-1)
        q, k, v = (t.reshape(B, T, NH, HS).transpose(1, 2) for t in (q, k, v))
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(HS)
        scores = scores.masked_fill(~causal, float("-inf"))
        y = torch.softmax(scores, dim=-1) @ v
        y = y.transpose(1, 2).reshape(B, T, C)
        x = x + (y @ p[f"h{l}.attn.proj_w"].T + p[f"h{l}.attn.proj_b"])
        h = layernorm(x, p[f"h{l}.ln2_w"], p[f"h{l}.ln2_b"])
        h = gelu_tanh(h @ p[f"h{l}.mlp.fc_w"].T + p[f"h{l}.mlp.fc_b"])
        x = x + (h @ p[f"h{l}.mlp.proj_w"].T + p[f"h{l}.mlp.proj_b"])
    x = layernorm(x, p["lnf_w"], p["lnf_b"])
    head = p["wte"] if cfg["tie_embeddings"] else p["lm_head"]
    logits = (x @ head.T).reshape(B * T, V)
    logp = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
    return -logp.gather(1, targets.reshape(B * T, 1)).mean()


def main():
    if len(sys.argv) != 2:
        print("usage: gpt2_reference.py DIR", file=sys.stderr)
        return 2
    d = sys.argv[1]
    cfg = read_config(os.path.join(d, "config.txt"))
    B, T = cfg["batch"], cfg["seq_len"]
    flat = np.fromfile(os.path.join(d, "params.bin"), dtype="<f4").astype(np.float64)
    shapes = param_shapes(cfg)
    total = sum(int(np.prod(s)) for _, s in shapes)
    if flat.size != total:
        print(f"params.bin has {flat.size} floats, expected {total}", file=sys.stderr)
        return 1
    params, off = {}, 0
    for name, shape in shapes:
        n = int(np.prod(shape))
        params[name] = torch.tensor(flat[off:off + n].reshape(shape), dtype=torch.float64, requires_grad=True)
        off += n
    tokens = torch.from_numpy(np.fromfile(os.path.join(d, "tokens.bin"), dtype="<i4").astype(np.int64)).reshape(B, T)
    targets = torch.from_numpy(np.fromfile(os.path.join(d, "targets.bin"), dtype="<i4").astype(np.int64)).reshape(B, T)
    loss = gpt2_loss(params, cfg, tokens, targets)
    loss.backward()
    np.array([loss.item()], dtype="<f8").tofile(os.path.join(d, "ref_loss.bin"))
    grads = np.concatenate([params[name].grad.numpy().reshape(-1) for name, _ in shapes]).astype("<f8")
    grads.tofile(os.path.join(d, "ref_grads.bin"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
