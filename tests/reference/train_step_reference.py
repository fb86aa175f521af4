#!/usr/bin/env python3
"""Float64 PyTorch reference of whole pipetrain training steps and evaluations,
for tests/app/train_step_reference_test.sh.

Usage: train_step_reference.py CHECKS RUN_DIR INIT_DIR KEY=VALUE...

  CHECKS    comma-separated: train (every step's loss, grad_norm and data_hash and
            the final parameters of RUN_DIR against K reference AdamW steps from the
            initial parameters), eval (every val_loss of RUN_DIR at step 0 and at
            the last step against the mean reference loss over eval_batches
            distinct validation batches of the initial and the final parameters).
  RUN_DIR   a finished `pipetrain train` run with run.save_params: true:
            metrics.jsonl and params/<global id>.bin (raw fp32).
  INIT_DIR  params/ of a run of the same model and seed whose only update had
            learning rate 1e-30 (see "Initial parameters" below).
  KEY=VALUE the config keys of the run (the same text the test passes to
            `pipetrain train --set`); every key read below is required, so the
            reference never assumes a default of the implementation. One more key,
            expect_clipping=mixed|none|any, says whether clipping must engage on
            some steps and not others (mixed) or on none.

Every value is independent of the code under test: the model is the float64 GPT-2
of gpt2_reference.py (plain torch ops), the optimizer is torch.optim.AdamW with
torch.nn.utils.clip_grad_norm_, the batches are cut from the token shards here by
the rule data/loader.h documents (data.shuffle must be false: slot s of the train
stream is sequence s mod S; validation batch i is sequences i*B .. i*B+B-1), and
the learning rate is the documented closed form (linear warm-up to lr, cosine to
min_lr_ratio*lr at the last step). Exit 0 when every check holds, 1 with one
"FAIL" line per violated check, 2 on usage errors, 3 without torch.

Initial parameters. pipetrain writes its parameters only after the last step. The
initialisation is a pure function of (seed, tensor, element), so INIT_DIR comes
from a one-step run with lr = 1e-30, weight_decay = 0, no warm-up: that update moves
an element by lr * |m^/(sqrt(v^)+eps)| <= 1e-30 (first step: |m^| = |g| = sqrt(v^)),
far below every bound here.

Tolerances (the float32 run against this float64 reference):
  Gradients. The float32 gradient of one element is within rho * max|g| of float64,
  max over its tensor, rho ~ 1e-6 (tests/model/reference_test.cc estimates "a few
  1e-6", observed 7e-7; the tensor's max|g| at step k is known here).
  Adam direction u = m^/(sqrt(v^)+eps): a gradient error dg moves it by
    |du| <= |dm^|/(sqrt(v^)+eps) + |m^| |d sqrt(v^)|/(sqrt(v^)+eps)^2 <= 3 |dg| / eps,
  since |dm^|, |d sqrt(v^)| <= max_k |dg_k| (weighted means / RMS of the history)
  and |m^| <= 1.2 sqrt(v^) for beta1^2 < beta2 over K <= 6 steps (Cauchy-Schwarz).
  The test sets optimizer.eps = 1e-3 (about a fifth of the RMS gradient element, so
  Adam still normalises) to keep 1/eps small: with eps = 1e-8, an element whose |g| is
  below its float32 error flips its step from +lr to -lr.
  The float32 evaluation of u itself (beta1, beta2 and the bias corrections
  1 - beta^t rounded to float32: ~2.4e-7 relative each; g*g, sqrt, division: a few
  ulps) errs by <= 1e-6 |u| (U_REL), and |u| <= 1.2 sqrt(v^)/(sqrt(v^)+eps) <= 1.2 max|g|/eps.
  Parameters. p_K = p_0 - sum_k lr_k (u_k + wd p_{k-1}), so per element
    |p_K - p_ref| <= sum_k lr_k max|g_k| (3 rho + 1.2 U_REL) / eps  (decay: wd*lr*|dp|, second order)
                    + K * 2^-24 * max_k |p_k|   (float32 rounding of each p -= update: half an ulp).
  Checked per element with rho = 1e-6 (PARAM_RHO); the change of later gradients
  caused by dp itself is not in the bound. Observed: LayerNorm weights (|p| ~ 1)
  reach about 0.6 of the bound (rounding), every other tensor stays below 0.05 of it.
  A wrong decay group moves a tensor by lr * wd * |p| per step (wd = 0.5: LayerNorm
  weights 5e-3, wte up to 4e-4), clipping at the wrong norm changes whole steps by
  O(lr): both hundreds of times the bound (at most a few 1e-7 here).
  Losses and grad norms per step: relative 1e-5 (METRIC_RTOL): the 2e-6 forward
  bound of reference_test.cc with 5x for the parameter drift (observed < 1e-7).
  val_loss: relative 2e-6 (VAL_RTOL), the forward bound, on the saved parameters
  themselves (step K) or the initial ones (step 0).
"""
import glob
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import numpy as np
    import torch
    from gpt2_reference import gpt2_loss, param_shapes
except ImportError as e:
    print(f"train_step_reference.py: {e}; run scripts/install_deps.sh to install torch", file=sys.stderr)
    sys.exit(3)

INIT_LR_MAX = 1e-30          # the lr of the INIT_DIR run, checked against its metrics
PARAM_RHO = 1e-6             # float32 gradient error / max|g| of the tensor; see "Tolerances"
U_REL = 1e-6                 # relative float32 error of the Adam direction from its own arithmetic
METRIC_RTOL = 1e-5
VAL_RTOL = 2e-6
SHARD_HEADER_INTS = 256      # llm.c shard: 256 int32 header (magic 20240520, version 1, N), N uint16


class Keys:
    """KEY=VALUE arguments; a missing key is a usage error naming it."""

    def __init__(self, args):
        self.values = {}
        for a in args:
            if "=" not in a:
                raise SystemExit(f"train_step_reference.py: expected KEY=VALUE, got '{a}'")
            k, v = a.split("=", 1)
            self.values[k] = v

    def get(self, key, kind):
        if key not in self.values:
            print(f"train_step_reference.py: key '{key}' must be given", file=sys.stderr)
            sys.exit(2)
        v = self.values[key]
        if kind is bool:
            return v in ("true", "1")
        return kind(v)


def read_tokens(pattern):
    out = []
    for path in sorted(glob.glob(pattern)):
        header = np.fromfile(path, dtype="<i4", count=SHARD_HEADER_INTS)
        assert header[0] == 20240520 and header[1] == 1, path
        out.append(np.fromfile(path, dtype="<u2", offset=4 * SHARD_HEADER_INTS)[: header[2]])
    assert out, f"no shards match {pattern}"
    return np.concatenate(out).astype(np.int64)


def sequences(tokens, idx, T):
    """(len(idx), T) inputs and targets of sequences idx (stride T, T+1 tokens)."""
    rows = np.stack([tokens[i * T: i * T + T + 1] for i in idx])
    return torch.from_numpy(rows[:, :T].copy()), torch.from_numpy(rows[:, 1:].copy())


def fnv1a(inputs, targets):
    h = 0xCBF29CE484222325
    for arr in (inputs, targets):
        for v in arr.reshape(-1).tolist():
            for k in range(4):
                h ^= (v >> (8 * k)) & 0xFF
                h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def learning_rate(k, step):
    lr, warmup, total = k.get("optimizer.lr", float), k.get("optimizer.warmup_steps", int), k.get("training.steps", int)
    if step < warmup:
        return lr * (step + 1) / warmup
    assert k.get("optimizer.lr_schedule", str) == "cosine"
    min_lr = lr * k.get("optimizer.min_lr_ratio", float)
    progress = min(1.0, (step - warmup) / max(1, total - warmup - 1))
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def load_params(dirname, shapes):
    out = {}
    for gid, (name, shape) in enumerate(shapes):
        a = np.fromfile(os.path.join(dirname, f"{gid}.bin"), dtype="<f4")
        assert a.size == int(np.prod(shape)), f"{dirname}/{gid}.bin: {a.size} floats, expected shape {shape}"
        out[name] = torch.tensor(a.astype(np.float64).reshape(shape), dtype=torch.float64)
    assert not os.path.exists(os.path.join(dirname, f"{len(shapes)}.bin")), f"{dirname}: more tensors than the model"
    return out


def decayed(name, shape, decay_embeddings):
    """AdamW groups: matrices and the untied head decay; biases, LayerNorms and wpe do not; wte per the key."""
    if name == "wte":
        return decay_embeddings
    return len(shape) == 2 and name != "wpe"


class Checker:
    def __init__(self):
        self.failures = 0

    def close(self, what, got, ref, rtol):
        err = abs(got - ref)
        ok = err <= rtol * abs(ref)
        print(f"  {'ok  ' if ok else 'FAIL'} {what}: {got!r} ref {ref!r} rel err {err / abs(ref):.2e} (bound {rtol:g})")
        self.failures += not ok

    def fail(self, what):
        print(f"  FAIL {what}")
        self.failures += 1


def make_optimizer(k, cfg, params):
    de = k.get("optimizer.decay_embeddings", bool)
    shapes = param_shapes(cfg)
    groups = [{"params": [params[n] for n, s in shapes if decayed(n, s, de)],
               "weight_decay": k.get("optimizer.weight_decay", float)},
              {"params": [params[n] for n, s in shapes if not decayed(n, s, de)], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=1.0, betas=(k.get("optimizer.beta1", float), k.get("optimizer.beta2", float)),
                             eps=k.get("optimizer.eps", float), foreach=False)


def clip_gradients(params, clip):
    """Global norm of the gradients (before clipping); scales them to norm `clip` when it is above (0 = off)."""
    if clip > 0:
        return float(torch.nn.utils.clip_grad_norm_(list(params.values()), clip))
    return math.sqrt(sum(float((p.grad ** 2).sum()) for p in params.values()))


def check_step_record(step, r, loss, norm, lr, batch, clip, chk):
    """metrics.jsonl record of 0-based `step` against the reference's loss, norm, lr and first micro-batch."""
    chk.close(f"step {step + 1} loss", r["loss"], loss, METRIC_RTOL)
    chk.close(f"step {step + 1} grad_norm", r["grad_norm"], norm, METRIC_RTOL)
    chk.close(f"step {step + 1} lr", r["lr"], lr, 1e-8)  # metrics.jsonl prints 9 significant digits
    if clip > 0 and abs(norm - clip) < 1e-3 * clip:
        chk.fail(f"step {step + 1}: norm {norm} within 1e-3 of grad_clip {clip}; pick a grad_clip away from the norms")
    h = fnv1a(*batch)
    if str(h) != str(r["data_hash"]):
        chk.fail(f"step {step + 1}: data_hash {r['data_hash']} != reference batch hash {h} (loader order changed?)")


def check_params(k, cfg, params, init, final, drift, pmax, chk):
    """Final parameters per tensor against the reference; drift[name] = sum_k lr_k max|g_k| of the tensor,
    pmax[name] = max_k |p_k| per element."""
    K, eps = k.get("training.steps", int), k.get("optimizer.eps", float)
    worst = 0.0
    for gid, (name, _) in enumerate(param_shapes(cfg)):
        ref, got = params[name].detach(), final[name]
        bound = (3.0 * PARAM_RHO + 1.2 * U_REL) * drift[name] / eps + K * 2.0 ** -24 * pmax[name]
        excess = float(((got - ref).abs() / bound).max())
        worst = max(worst, excess)
        if excess > 1.0:
            chk.fail(f"tensor {gid} {name}: max |p - p_ref| = {float((got - ref).abs().max()):.3e} is {excess:.1f}x "
                     f"the bound (the reference moved it by up to {float((ref - init[name]).abs().max()):.3e})")
    print(f"  {'ok  ' if worst <= 1 else 'FAIL'} {len(params)} tensors after {K} steps: worst error / bound = {worst:.3e}")


def check_train(k, cfg, metrics, init, final, train_tokens, chk):
    B, T, m, K = (k.get(x, int) for x in ("training.micro_batch_size", "training.seq_len", "training.microbatches",
                                            "training.steps"))
    S = (train_tokens.size - 1) // T
    clip = k.get("optimizer.grad_clip", float)
    params = {n: p.clone().requires_grad_(True) for n, p in init.items()}
    opt = make_optimizer(k, cfg, params)
    steps = [r for r in metrics if "loss" in r]
    if len(steps) != K:
        chk.fail(f"{len(steps)} step records in metrics.jsonl, expected {K}")
        return
    clipped, drift = [], {n: 0.0 for n in params}
    pmax = {n: p.abs() for n, p in init.items()}
    for step in range(K):
        opt.zero_grad()
        # Global micro-batch g = step*m + mb holds slots g*B .. g*B+B-1 (dp = 1, no shuffle).
        inputs, targets = sequences(train_tokens, [(step * m * B + j) % S for j in range(m * B)], T)
        # The mean over micro-batches of their mean losses is the mean over all rows (equal sizes).
        loss = gpt2_loss(params, cfg, inputs, targets)
        loss.backward()
        norm = clip_gradients(params, clip)
        clipped.append(clip > 0 and norm > clip)
        lr = learning_rate(k, step)
        for g in opt.param_groups:
            g["lr"] = lr
        for n, p in params.items():
            drift[n] += lr * float(p.grad.abs().max())
        opt.step()
        pmax = {n: torch.maximum(pmax[n], p.detach().abs()) for n, p in params.items()}
        print(f" step {step + 1}: lr {lr:.3e} norm {norm:.6f} ({'clipped' if clipped[-1] else 'not clipped'})")
        check_step_record(step, steps[step], float(loss), norm, lr, (inputs[:B].numpy(), targets[:B].numpy()), clip,
                          chk)
    expect = k.get("expect_clipping", str)
    if expect == "mixed" and not (any(clipped) and not all(clipped)):
        chk.fail(f"clipping was expected on some steps and not others, got {clipped}; adjust optimizer.grad_clip")
    if expect == "none" and any(clipped):
        chk.fail(f"no clipping expected, got {clipped}")
    check_params(k, cfg, params, init, final, drift, pmax, chk)


def mean_val_loss(cfg, params, val_tokens, B, T, count):
    with torch.no_grad():
        losses = []
        for i in range(count):
            inputs, targets = sequences(val_tokens, range(i * B, i * B + B), T)
            losses.append(float(gpt2_loss(params, cfg, inputs, targets)))
    return sum(losses) / count, losses


def check_eval(k, cfg, metrics, init, final, chk):
    B, T, K, n = (k.get(x, int) for x in ("training.micro_batch_size", "training.seq_len", "training.steps",
                                          "training.eval_batches"))
    val_tokens = read_tokens(k.get("data.val", str))
    evals = {r["step"]: r["val_loss"] for r in metrics if "val_loss" in r}
    if 0 not in evals or K not in evals:
        chk.fail(f"val_loss records at steps {sorted(evals)}, expected 0 and {K}")
        return
    for step, params in ((0, init), (K, final)):
        ref, losses = mean_val_loss(cfg, params, val_tokens, B, T, n)
        if len(set(losses)) != n:
            chk.fail(f"the {n} validation batches have equal losses {losses}; they must differ for this check")
        chk.close(f"val_loss at step {step} (mean of {n} batches)", evals[step], ref, VAL_RTOL)


def main():
    if len(sys.argv) < 4:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    checks, run_dir, init_dir = sys.argv[1].split(","), sys.argv[2], sys.argv[3]
    k = Keys(sys.argv[4:])
    torch.set_default_dtype(torch.float64)
    cfg = {x: k.get("model." + x, int) for x in ("vocab_size", "max_seq_len", "n_layer", "n_head", "n_embd")}
    cfg["tie_embeddings"] = int(k.get("model.tie_embeddings", bool))
    if k.get("data.shuffle", bool):
        print("train_step_reference.py: data.shuffle must be false", file=sys.stderr)
        return 2
    shapes = param_shapes(cfg)
    init = load_params(init_dir, shapes)
    final = load_params(os.path.join(run_dir, "params"), shapes)
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        metrics = [json.loads(line) for line in f if line.strip()]
    with open(os.path.join(init_dir, "..", "metrics.jsonl")) as f:
        init_lrs = [json.loads(line).get("lr", 0.0) for line in f if line.strip()]
    if max(init_lrs) > INIT_LR_MAX:
        print(f"train_step_reference.py: {init_dir} comes from a run with lr {max(init_lrs)} > {INIT_LR_MAX}", file=sys.stderr)
        return 2
    chk = Checker()
    if "train" in checks:
        check_train(k, cfg, metrics, init, final, read_tokens(k.get("data.train", str)), chk)
    if "eval" in checks:
        check_eval(k, cfg, metrics, init, final, chk)
    print(f"train_step_reference.py: {chk.failures} failure(s)")
    return 1 if chk.failures else 0


if __name__ == "__main__":
    sys.exit(main())
