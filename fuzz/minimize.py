#!/usr/bin/env python3
"""Adds to a target's committed corpus (fuzz/corpus/TARGET) the few inputs of a fuzzing run
that cover the most code it does not cover yet, so the committed corpus stays tens of files:

    python3 fuzz/minimize.py TARGET RUN_DIR [--max N]

Every file already in fuzz/corpus/TARGET (the seeds, kept crash inputs, earlier picks) stays.
Then the RUN_DIR inputs reaching the most code edges the others do not are copied in as
`cov-<sha1>`, at most N (default 25). libFuzzer's merge (`-merge=1 -merge_control_file`)
credits each edge to the first input, smallest first, that reaches it, after the committed
files. A plain `cargo fuzz cmin` keeps every input with a new feature (edge hit counts,
stack depth): hundreds per target.
Run from the repository root; needs cargo-fuzz (docs/testing.md, "Fuzzing").
"""

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("target")
    parser.add_argument("run_dir")
    parser.add_argument("--max", type=int, default=25)
    args = parser.parse_args()
    corpus = os.path.join("fuzz", "corpus", args.target)
    os.makedirs(corpus, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        # libFuzzer's merge runs the first directory's inputs first and credits each edge
        # to the first input that reaches it: what the kept files reach is credited to them.
        first = os.path.join(work, "kept")
        inputs = os.path.join(work, "inputs")
        os.makedirs(first)
        os.makedirs(inputs)
        origin = {}
        for kept, directory in ((True, corpus), (False, args.run_dir)):
            for name in sorted(os.listdir(directory)):
                path = os.path.join(directory, name)
                if not os.path.isfile(path):
                    continue
                data = open(path, "rb").read()
                digest = hashlib.sha1(data).hexdigest()
                if digest in origin:
                    continue
                copy = os.path.join(first if kept else inputs, digest)
                shutil.copyfile(path, copy)
                origin[digest] = (kept, path)
        control = os.path.join(work, "control")
        env = dict(os.environ, RUSTC_BOOTSTRAP=os.environ.get("RUSTC_BOOTSTRAP", "1"))
        subprocess.run(
            ["cargo", "fuzz", "run", "-s", "none", args.target, first, inputs, "--",
             "-merge=1", "-merge_control_file=" + control],
            check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        edges = read_edges(control)

    # Each edge is credited once, so the candidates' edges are disjoint: the best ones
    # are those credited with the most.
    candidates = {d: edges.get(d, set()) for d, (kept, _) in origin.items() if not kept}
    added = 0
    for best in sorted(candidates, key=lambda d: (-len(candidates[d]), d)):
        gain = len(candidates[best])
        if added == args.max or gain == 0:
            break
        shutil.copyfile(origin[best][1], os.path.join(corpus, "cov-" + best))
        print(f"{args.target}: cov-{best} adds {gain} edges")
        added += 1
    print(f"{args.target}: {added} inputs added, {len(os.listdir(corpus))} in {corpus}")


def read_edges(control):
    """Edges per input (by file name) from a libFuzzer merge control file."""
    lines = open(control).read().splitlines()
    count = int(lines[0])
    names = [os.path.basename(p) for p in lines[2:2 + count]]
    edges = {}
    for line in lines[2 + count:]:
        parts = line.split()
        if parts and parts[0] == "COV":
            edges[names[int(parts[1])]] = set(parts[2:])
    return edges


if __name__ == "__main__":
    sys.exit(main())
