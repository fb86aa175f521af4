#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets to tests/fuzz/corpus/<target>/.

The committed corpus is this script's output plus any regression inputs a fuzz run
found (named regress-*). Run from anywhere: python3 tests/fuzz/make_seeds.py.
Input formats are described at the top of each fuzz_*.cc.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def put(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def config_seeds():
    minimal = "data:\n  train: d/train_*.bin\n"
    put("fuzz_config", "minimal.yaml", minimal)
    with open(os.path.join(ROOT, "configs", "tiny_test.yaml")) as f:
        put("fuzz_config", "tiny_test.yaml", f.read())
    put("fuzz_config", "overrides", minimal + "\0training.steps=3\nparallel.layer_split=[1,2]\nparallel.pp=2\nmodel.n_layer=3")
    put("fuzz_config", "flow.yaml", "{data: {train: 'a*.bin', val: \"b*.bin\"}, schedule: {kind: interleaved_1f1b, chunks: 2},"
        " parallel: {pp: 2, layer_split: [3, 3, 3, 3]}, model: {n_layer: 12}}\n")
    put("fuzz_config", "anchors.yaml", "base: &b {steps: 2}\ntraining: *b\n" + minimal)
    put("fuzz_config", "unknown_key.yaml", minimal + "training:\n  stepz: 3\n")
    put("fuzz_config", "wrong_type.yaml", minimal + "training:\n  steps: 1.5\nmodel:\n  tie_embeddings: maybe\n")
    put("fuzz_config", "bad_syntax.yaml", "training:\n  steps: [1, 2\n  seq_len: 4\n")
    put("fuzz_config", "async.yaml", minimal + "schedule:\n  kind: paci\n  paci:\n    allowed_lagging: [2, 1]\nparallel:\n  pp: 2\n")
    put("fuzz_config", "numbers.yaml", minimal + "optimizer:\n  lr: .inf\n  eps: 1e-300\n  beta2: 0.999999999999\n"
        "training:\n  steps: 0x10\n  max_seconds: -0.0\n")


SHARD_MAGIC, SHARD_VERSION = 20240520, 1


def shard(tokens, count=None, magic=SHARD_MAGIC, version=SHARD_VERSION):
    header = [0] * 256
    header[0], header[1], header[2] = magic, version, len(tokens) if count is None else count
    return struct.pack("<256i", *header) + struct.pack("<%dH" % len(tokens), *tokens)


def shard_seeds():
    v = lambda n: struct.pack(">H", n)  # the target's vocab_size prefix
    toks = [50256, 464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 13]
    put("fuzz_token_shard", "gpt2_valid", v(50257) + shard(toks))
    put("fuzz_token_shard", "byte_valid", v(256) + shard(list(b"hello, shard\n")))
    put("fuzz_token_shard", "unchecked_empty", v(0) + shard([]))
    put("fuzz_token_shard", "token_too_big", v(256) + shard([1, 2, 300]))
    put("fuzz_token_shard", "truncated", v(256) + shard([1, 2, 3, 4])[:-3])
    put("fuzz_token_shard", "trailing", v(256) + shard([1, 2]) + b"\0\0")
    put("fuzz_token_shard", "bad_magic", v(256) + shard([1], magic=1234))
    put("fuzz_token_shard", "bad_version", v(256) + shard([1], version=2))
    put("fuzz_token_shard", "negative_count", v(256) + shard([], count=-5))
    put("fuzz_token_shard", "short_header", v(256) + shard([])[:100])


def fnv1a64(b):
    h = 14695981039346656037
    for x in b:
        h = ((h ^ x) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def ckpt_payload(stages, pp=2, pp_rank=0, schedule="1f1b", fingerprint="model.n_layer=2\nrun.seed=1\n"):
    s = lambda t: struct.pack("<I", len(t)) + t.encode()
    p = struct.pack("<4i", 1, pp, 1, pp_rank) + s(schedule)
    p += struct.pack("<I", 2) + struct.pack("<4i", 0, 1, 1, 2)
    p += struct.pack("<qqQ", 7, 1, fnv1a64(fingerprint.encode())) + s(fingerprint)
    p += struct.pack("<I", len(stages))
    for stage, tensors in stages:
        p += struct.pack("<3iqI", stage, stage, stage + 1, 7, len(tensors))
        for gid, name, n in tensors:
            vals = struct.pack("<%df" % n, *[0.25 * i for i in range(n)])
            p += struct.pack("<i", gid) + s(name) + struct.pack("<Q", n) + vals * 3
    return p


def ckpt_file(payload):
    return b"PTCKPT\r\n" + struct.pack("<IQQ", 1, len(payload), fnv1a64(payload)) + payload


def checkpoint_seeds():
    two = ckpt_payload([(0, [(0, "wte", 4), (1, "wpe", 2), (2, "h0.ln1.w", 3)])])
    put("fuzz_checkpoint", "valid_raw", b"\0" + ckpt_file(two))
    put("fuzz_checkpoint", "valid_raw_disk", b"\2" + ckpt_file(two))
    put("fuzz_checkpoint", "valid_payload", b"\1" + two)
    put("fuzz_checkpoint", "empty_stage_payload", b"\3" + ckpt_payload([(1, [])], pp_rank=1))
    put("fuzz_checkpoint", "truncated", b"\0" + ckpt_file(two)[:-5])
    put("fuzz_checkpoint", "bad_checksum", b"\0" + ckpt_file(two)[:-1] + b"\x01")
    put("fuzz_checkpoint", "bad_magic", b"\0" + b"XTCKPT\r\n" + ckpt_file(two)[8:])
    put("fuzz_checkpoint", "huge_count_payload", b"\1" + two[:40] + b"\xff\xff\xff\xff" + two[44:])


def tokenizer_seeds():
    enc = lambda name, data: put("fuzz_gpt2_encoder", name, data)
    enc("small.json", b'{"!": 0, "\\"": 1, "<|endoftext|>": 50256}')
    enc("escapes.json", b'{"\\u0120the": 5, "\\ud83d\\ude00": 6, "a\\/b\\n": 7}\n')
    enc("bad_surrogate.json", b'{"\\ud83d": 1}')
    enc("big_value.json", b'{"a": 99999999999}')
    enc("trailing.json", b'{"a": 1} x')
    enc("duplicate.json", b'{"a": 1, "a": 2}')
    merges = lambda name, data: put("fuzz_gpt2_merges", name, data)
    merges("valid.bpe", "#version: 0.2\nh e\nl l\nt h\n\u0120 t\no r\n".encode())
    merges("unknown_token.bpe", b"#version: 0.2\nhe llo\n")
    merges("three_symbols.bpe", b"#version: 0.2\na b c\n")
    merges("no_header.bpe", b"a b\n")


if __name__ == "__main__":
    config_seeds()
    shard_seeds()
    checkpoint_seeds()
    tokenizer_seeds()
