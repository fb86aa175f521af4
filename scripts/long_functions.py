#!/usr/bin/env python3
"""Lists C++ functions longer than a limit (default 80 lines) in the given files.

Usage: scripts/long_functions.py [--max N] FILES...
A function is a top-level (namespace-scope or class-member) brace block whose opening
line looks like a definition (has ')' before '{' and is not a control statement or a
type definition). Lambdas and nested blocks count toward their enclosing function.
Exit status 1 when any function is longer than the limit.
"""
import re
import sys


def strip(line):
    line = re.sub(r'"(\\.|[^"\\])*"', '""', line)
    line = re.sub(r"'(\\.|[^'\\])*'", "''", line)
    return line.split("//")[0]


def functions(path):
    text = open(path).read().split("\n")
    depth, start, head, out = 0, None, "", []
    scope_depths = [0]  # depths at which namespaces / classes open
    for i, raw in enumerate(text, 1):
        line = strip(raw)
        for ch in line:
            if ch == "{":
                if start is None and depth in scope_depths:
                    h = (head + line).strip()
                    is_scope = re.search(r"\b(namespace|class|struct|enum|union)\b[^()]*$", h.split("{")[0]) or \
                        h.split("{")[0].rstrip().endswith("=")
                    if is_scope:
                        scope_depths.append(depth + 1)
                    elif ")" in h.split("{")[0] or h.split("{")[0].strip().endswith("const"):
                        start = (i, depth, h.split("{")[0].strip()[-90:])
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth + 1 in scope_depths and depth + 1 != 0 and start is None:
                    scope_depths.remove(depth + 1)
                if start is not None and depth == start[1]:
                    out.append((start[0], i, start[2]))
                    start = None
        head = (head + " " + line)[-300:] if line.strip() and not line.strip().endswith((";", "}")) else ""
    return out


def main(argv):
    limit = 80
    if argv[:1] == ["--max"]:
        limit, argv = int(argv[1]), argv[2:]
    bad = 0
    for path in argv:
        for first, last, name in functions(path):
            n = last - first + 1
            if n > limit:
                bad += 1
                print(f"{path}:{first}: {n} lines: {name}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
