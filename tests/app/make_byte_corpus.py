#!/usr/bin/env python3
"""Writes a deterministic pseudo-English text file (for byte-tokenizer test shards).

Usage: make_byte_corpus.py OUT_PATH [KBYTES]. A fixed word list and a linear
congruential generator, so every machine produces the same bytes.
"""
import sys

WORDS = ("the of and to in a is that for it as was with be by on not he this are or his from at which but have an "
         "they you were her she there been one all we their has would when if so no will more can out up what about "
         "time pipeline stage model gradient schedule bubble micro batch token loss weight version").split()


def main():
    out, kbytes = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 256
    state, parts, size = 12345, [], 0
    while size < kbytes * 1024:
        state = (1103515245 * state + 12345) % (1 << 31)
        w = WORDS[state % len(WORDS)]
        sep = ".\n" if state % 17 == 0 else " "
        parts.append(w + sep)
        size += len(w) + len(sep)
    with open(out, "w") as f:
        f.write("".join(parts))


if __name__ == "__main__":
    main()
