#!/usr/bin/env python3
"""The build outputs a GPU window needs, as ninja targets: what `scripts/gpu_check.sh`
builds instead of every target (issue #12: "builds only what the checks need").

  scripts/gpu_targets.py BUILD_DIR [--label gpu]

Prints, one per line and relative to BUILD_DIR, `pipetrain` (the benchmark, `prepare`
and the MPS study run it) and every file of BUILD_DIR that a test with the label names
in its command or environment (`ctest --show-only=json-v1`; for a test whose executable is
not built yet, the path ctest's text names), kept only if ninja builds it (`ninja -t
targets all`). The same list from a fresh build folder as from a built one. A gpu test added later is picked up with no list to edit.
Exit 2 when BUILD_DIR is not a configured Ninja build.
"""
import argparse
import json
import os
import subprocess
import sys


def ctest(build, *args):
    return subprocess.run(["ctest", *args], cwd=build, check=True, capture_output=True, text=True).stdout


def ctest_tests(build, label):
    return json.loads(ctest(build, "--show-only=json-v1", "-L", label)).get("tests", [])


def unbuilt_commands(build, label):
    """Executables of tests not built yet: ctest's JSON leaves their command out (a fresh
    build folder, the first run of a GPU window), its text names them."""
    prefix = "Could not find executable "
    return [line[len(prefix):].strip() for line in ctest(build, "-N", "-V", "-L", label).splitlines()
            if line.startswith(prefix)]


def ninja_outputs(build):
    out = subprocess.run(["ninja", "-C", build, "-t", "targets", "all"], check=True, capture_output=True,
                         text=True).stdout
    return {line.split(":", 1)[0] for line in out.splitlines() if ":" in line}


def words(test):
    """The test's command words and the values of its environment."""
    yield from test.get("command", [])
    for prop in test.get("properties", []):
        if prop.get("name") == "ENVIRONMENT":
            for kv in prop.get("value", []):
                yield kv.split("=", 1)[-1]


def needed(build, label):
    build = os.path.realpath(build)
    outputs = ninja_outputs(build)
    found = {"pipetrain"}
    candidates = [w for test in ctest_tests(build, label) for w in words(test)]
    for w in candidates + unbuilt_commands(build, label):
        if not os.path.isabs(w):
            continue
        rel = os.path.relpath(os.path.realpath(w), build)
        if not rel.startswith("..") and rel in outputs:
            found.add(rel)
    return sorted(found)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build")
    ap.add_argument("--label", default="gpu")
    args = ap.parse_args()
    if not os.path.exists(os.path.join(args.build, "build.ninja")):
        print(f"gpu_targets: {args.build} is not a configured Ninja build (no build.ninja); "
              "run cmake -G Ninja there first", file=sys.stderr)
        return 2
    print("\n".join(needed(args.build, args.label)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
