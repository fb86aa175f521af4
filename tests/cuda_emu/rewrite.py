#!/usr/bin/env python3
"""Rewrites a CUDA source (.cu / .cuh) into host C++ for the emulator (emu.h).

usage: rewrite.py INPUT OUTPUT

Only three constructs change; everything else is the kernel source as nvcc sees it:
  k<<<grid, block[, smem[, stream]]>>>(args)  ->  ::emu::launch("k", ::emu::Config(grid, block, ...), k, args)
    (a template kernel of the file launched without template arguments: launch_deduced
    with a generic lambda calling k, so its arguments are deduced as nvcc does)
  extern __shared__ T name[];                ->  T* name = static_cast<T*>(::emu::dynamic_shared());
  __shared__ T name[dims];                   ->  per-block storage from ::emu::static_shared (poisoned)
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 ..." : "+f"(d0..3) : "r"(a0..3), "r"(b0, b1))
                                             ->  ::emu::mma_m16n8k16_bf16(d0..3, a0..3, b0, b1)
  __launch_bounds__(N) kernel(params) {      ->  kernel(params) { ::emu::check_launch_bounds(N);
  reinterpret_cast<T*>(p)                    ->  ::emu::device_cast<T*>(p): p aligned for T, as the GPU requires
Any other inline PTX is left alone and fails to compile: it is not emulated.
Line numbers are kept (a #line directive and the same number of newlines per
rewritten span), so compiler errors and emulator reports point into the .cu file.
"""
import re
import sys

TEMPLATE_KERNEL = re.compile(r"template\s*<[^;{]*?>\s*(?:static\s+)?__global__\s+void\s+"
                             r"(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\(")
LAUNCH = re.compile(r"([A-Za-z_][\w:]*(?:\s*<[^<>;{}]*>)?)\s*<<<")
EXTERN_SHARED = re.compile(r"extern\s+__shared__\s+(?:__align__\(\s*\d+\s*\)\s+)?([^;\[]+?)\s+(\w+)\s*\[\s*\]\s*;")
MMA = re.compile(r'asm\s*(?:volatile\s*)?\(\s*"mma\.sync\.aligned\.m16n8k16\.row\.col\.f32\.bf16\.bf16\.f32')
MMA_OPERAND = re.compile(r'"\+?[fr]"\s*\(([^()]*)\)')
STATIC_SHARED = re.compile(r"__shared__\s+([^;\[]+?)\s+(\w+)\s*((?:\[[^\]]+\]\s*)*);")


def matching(text, i, open_ch, close_ch):
    """Index just past the bracket closing the one at text[i]."""
    depth = 0
    for j in range(i, len(text)):
        if text[j] == open_ch:
            depth += 1
        elif text[j] == close_ch:
            depth -= 1
            if depth == 0:
                return j + 1
    raise SystemExit(f"rewrite.py: unbalanced {open_ch} at offset {i}")


def keep_lines(old, new):
    """new, padded with the newlines old spanned."""
    return new + "\n" * (old.count("\n") - new.count("\n"))


def rewrite_launches(text):
    templates = set(TEMPLATE_KERNEL.findall(text))  # kernels a launch may leave to deduction
    out, pos = [], 0
    for m in LAUNCH.finditer(text):
        if m.start() < pos:
            continue
        cfg_end = text.index(">>>", m.end())
        args_open = text.index("(", cfg_end)
        args_close = matching(text, args_open, "(", ")")
        kernel = re.sub(r"\s+", "", m.group(1))
        name = kernel.split("<")[0]
        cfg = text[m.end():cfg_end]
        args = text[args_open + 1:args_close - 1].strip()
        if "<" not in kernel and name in templates:  # template arguments deduced from args
            fn = f"[](auto... p) {{ {kernel}(p...); }}"
            call = f'::emu::launch_deduced("{name}", ::emu::Config({cfg}), {fn}' + (f", {args})" if args else ")")
        else:
            call = f'::emu::launch("{name}", ::emu::Config({cfg}), {kernel}' + (f", {args})" if args else ")")
        out.append(text[pos:m.start()])
        out.append(keep_lines(text[m.start():args_close], call))
        pos = args_close
    out.append(text[pos:])
    return "".join(out)


def rewrite_mma(text):
    out, pos = [], 0
    for m in MMA.finditer(text):
        end = matching(text, text.index("(", m.start()), "(", ")")
        operands = MMA_OPERAND.findall(text[m.start():end])
        if len(operands) != 10:
            raise SystemExit(f"rewrite.py: an mma asm with {len(operands)} operands, expected 10 (d0-3, a0-3, b0-1)")
        out.append(text[pos:m.start()])
        out.append(keep_lines(text[m.start():end], f"::emu::mma_m16n8k16_bf16({', '.join(operands)})"))
        pos = end
    out.append(text[pos:])
    return "".join(out)


def rewrite_launch_bounds(text):
    out, pos = [], 0
    for m in re.finditer(r"__launch_bounds__\s*\(", text):
        if m.start() < pos:
            continue
        args_end = matching(text, m.end() - 1, "(", ")")
        bounds = text[m.end():args_end - 1]
        params_end = matching(text, text.index("(", args_end), "(", ")")
        body = text.index("{", params_end) + 1
        out.append(text[pos:m.start()])
        out.append(keep_lines(text[m.start():args_end], ""))
        out.append(text[args_end:body])
        out.append(f" ::emu::check_launch_bounds({bounds});")
        pos = body
    out.append(text[pos:])
    return "".join(out)


def rewrite_shared(text):
    text = EXTERN_SHARED.sub(
        lambda m: f"{m.group(1)}* {m.group(2)} = static_cast<{m.group(1)}*>(::emu::dynamic_shared());", text)

    def static(m):
        t, name, dims = m.group(1), m.group(2), re.sub(r"\s+", "", m.group(3))
        full = f"{t}{dims}"
        return (f"static const char emu_key_{name} = 0; "
                f"auto& {name} = ::emu::shared_var<{full}>(&emu_key_{name});")
    return STATIC_SHARED.sub(static, text)


def main():
    src, dst = sys.argv[1], sys.argv[2]
    with open(src, encoding="utf-8") as f:
        text = f.read()
    body = rewrite_launch_bounds(rewrite_mma(rewrite_shared(rewrite_launches(text))))
    body = re.sub(r"\breinterpret_cast\s*<", "::emu::device_cast<", body)
    with open(dst, "w", encoding="utf-8") as f:
        f.write(f"// Generated by tests/cuda_emu/rewrite.py from {src}; do not edit.\n")
        f.write(f'#line 1 "{src}"\n')
        f.write(body)


if __name__ == "__main__":
    main()
