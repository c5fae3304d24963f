#!/usr/bin/env python3
"""Check an exported ARPA file against `lstm-lm score` on the n-gram run it came from.

Not part of `cargo test`: it needs Python's `kenlm` (a C++ extension). In a virtual
environment outside the repo:

    python3 -m venv /tmp/kenlm-venv && /tmp/kenlm-venv/bin/pip install kenlm
    cargo build --release -p lstm-lm-cli
    target/release/lstm-lm ngram train --data data/wikitext-2/train.txt --order 5 --out runs/kn5
    target/release/lstm-lm ngram export --model runs/kn5 --format arpa --out kn5.arpa
    /tmp/kenlm-venv/bin/python tools/kenlm_check.py --bin target/release/lstm-lm \\
        --model runs/kn5 --arpa kn5.arpa --data data/wikitext-2/test.txt [--lines 2000]

For each non-empty line of --data (the first --lines of them) it compares the sentence's log10
probability, `<s>` and `</s>` included, from three readers:

- `lstm-lm score --model RUN --file F --json` (natural-log total divided by ln 10);
- `kenlm.Model(ARPA).full_scores(line, bos=True, eos=True)`, summed in double precision, when
  `kenlm` imports (its `score()` returns the sum in single precision, which drifts from the
  exact sum by up to about 1e-3 on a 300-token line; that figure is printed too, for
  information);
- the reader below, written here from the ARPA definition (longest listed n-gram, plus the
  backoff weights of the longer contexts; unknown words read as <unk>), which needs nothing.

It prints the number of sentences and the largest absolute difference of each reader's
sentence log10 probability from lstm-lm's (and, for kenlm, of any single token's), and exits 1
when one exceeds --tolerance (default 1e-4; ARPA values are 32-bit floats).
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile


def read_arpa(path):
    """Returns one dict per order: words tuple -> (log10 p, log10 backoff)."""
    tables = []
    order = None
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.strip()
            if not line or line == "\\data\\":
                continue
            if line == "\\end\\":
                break
            if line.startswith("ngram ") and order is None:
                tables.append({})
                continue
            if line.startswith("\\") and line.endswith("-grams:"):
                order = int(line[1:-len("-grams:")])
                continue
            fields = line.split()
            words = tuple(fields[1:order + 1])
            backoff = float(fields[order + 1]) if len(fields) > order + 1 else 0.0
            tables[order - 1][words] = (float(fields[0]), backoff)
    return tables


def arpa_log10(tables, context, word):
    """log10 p(word | context) by the standard backoff rule."""
    if (word,) not in tables[0]:
        word = "<unk>"
    context = tuple(context[-(len(tables) - 1):]) if len(tables) > 1 else ()
    backoff = 0.0
    for start in range(len(context) + 1):
        gram = context[start:] + (word,)
        entry = tables[len(gram) - 1].get(gram)
        if entry is not None:
            return entry[0] + backoff
        ctx = context[start:]
        if ctx:
            listed = tables[len(ctx) - 1].get(ctx)
            if listed is not None:
                backoff += listed[1]
    raise ValueError(f"{word!r} has no unigram")


def arpa_sentence(tables, line):
    seq = ["<s>"] + line.split() + ["</s>"]
    return sum(arpa_log10(tables, seq[:i], seq[i]) for i in range(1, len(seq)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default="target/release/lstm-lm")
    ap.add_argument("--model", required=True, help="n-gram run folder")
    ap.add_argument("--arpa", required=True, help="ARPA file exported from --model")
    ap.add_argument("--data", required=True, help="text file, one sentence per line")
    ap.add_argument("--lines", type=int, default=2000)
    ap.add_argument("--tolerance", type=float, default=1e-4)
    args = ap.parse_args()

    with open(args.data, encoding="utf-8") as f:
        lines = [l.rstrip("\n") for l in f if l.strip()][: args.lines]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as t:
        t.write("\n".join(lines) + "\n")
        tmp = t.name
    try:
        out = subprocess.run(
            [args.bin, "score", "--model", args.model, "--file", tmp, "--json"],
            check=True, capture_output=True, text=True,
        ).stdout
    finally:
        os.unlink(tmp)
    scored = [json.loads(l) for l in out.splitlines()]
    ours = [s["total_logprob"] / math.log(10) for s in scored]
    our_tokens = [[t["logprob"] / math.log(10) for t in s["tokens"]] for s in scored]
    if len(ours) != len(lines):
        sys.exit(f"lstm-lm scored {len(ours)} lines of {len(lines)}")

    readers = {}
    try:
        import kenlm  # noqa: PLC0415

        model = kenlm.Model(args.arpa)
        readers["kenlm"] = lambda l: math.fsum(p for p, _, _ in model.full_scores(l, bos=True, eos=True))
        worst_token = worst_f32 = 0.0
        for i, line in enumerate(lines):
            theirs = [p for p, _, _ in model.full_scores(line, bos=True, eos=True)]
            if len(theirs) != len(our_tokens[i]):
                sys.exit(f"line {i + 1}: kenlm scored {len(theirs)} tokens, lstm-lm {len(our_tokens[i])}")
            for a, b in zip(theirs, our_tokens[i]):
                worst_token = max(worst_token, abs(a - b)) if math.isfinite(a - b) else math.inf
            worst_f32 = max(worst_f32, abs(model.score(line, bos=True, eos=True) - ours[i]))
        print(f"kenlm: max |log10 difference| of one token {worst_token:.3g}; "
              f"of kenlm's single-precision score() {worst_f32:.3g}")
    except ImportError as e:
        print(f"kenlm: not available ({e}); only the pure-Python reader is compared")
    tables = read_arpa(args.arpa)
    readers["python-arpa"] = lambda l: arpa_sentence(tables, l)

    failed = False
    for name, score in readers.items():
        worst, at = 0.0, None
        for i, line in enumerate(lines):
            d = abs(score(line) - ours[i])
            if not math.isfinite(d) or d > worst:
                worst, at = d, i
        print(f"{name}: {len(lines)} sentences, max |log10 difference| from lstm-lm {worst:.3g}"
              + (f" (line {at + 1})" if at is not None else ""))
        failed |= not (worst <= args.tolerance)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
