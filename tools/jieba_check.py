#!/usr/bin/env python3
"""Compare `lstm-lm --segment jieba` with Python's jieba 0.42 and print word-level agreement.

Not part of `cargo test`: it needs Python's jieba. In a virtual environment outside the repo:

    python3 -m venv /tmp/zh-venv && /tmp/zh-venv/bin/pip install jieba==0.42.1
    cargo build --release -p lstm-lm-cli
    /tmp/zh-venv/bin/python tools/jieba_check.py --bin target/release/lstm-lm [FILE...]

Without FILE it reads the seed article (../shared/seed/*.txt) and the fortunes-zh corpora
(../shared/datasets/fortunes-zh/tang300 and chinese).

For each file, terminal escape codes and carriage returns are removed first (both sides then
read the same text). lstm-lm fits a `word` tokenizer with `--segment jieba` on it
(`lstm-lm tokenize`) and prints each line's tokens (`lstm-lm encode --tokens --json`, the
`<eos>` dropped); Python cuts each line with `jieba.cut(line, HMM=True)`, whitespace dropped.

A word agrees when both sides cut the same characters of the line into it (the same span of
the line's non-space characters). Printed per file: lines identical, word precision (of
lstm-lm's words, the share Python also has), recall (of Python's words, the share lstm-lm also
has) and F1, over all words and over Chinese words (those with a Han character) only. Words
without Chinese characters differ by design: lstm-lm leaves chunks without Chinese characters
to the word tokenizer (split at whitespace only: `hello,world` stays one word), where Python's
jieba also cuts at punctuation.

Exits 1 when a file's Chinese-word F1 is below --min-f1 (default 0.999).
"""
import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.normpath(os.path.join(HERE, "..", "..", "shared"))

# Escape sequences as lstm-lm's cleaning step removes them (CSI, OSC, other ESC sequences).
ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x9b[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b\n]*(?:\x07|\x1b\\)?|\x1b[ -/]*[0-~]?"
)


def is_han(c):
    o = ord(c)
    return (
        o == 0x3007
        or 0x3400 <= o <= 0x4DBF
        or 0x4E00 <= o <= 0x9FFF
        or 0xF900 <= o <= 0xFAFF
        or 0x20000 <= o <= 0x323AF
    )


def spans(words):
    """Each word as (start, end) over the concatenation of the words."""
    out, pos = [], 0
    for w in words:
        out.append((pos, pos + len(w), any(is_han(c) for c in w)))
        pos += len(w)
    return out


def default_files():
    files = sorted(glob.glob(os.path.join(SHARED, "seed", "*.txt")))
    for name in ("tang300", "chinese"):
        path = os.path.join(SHARED, "datasets", "fortunes-zh", name)
        if os.path.exists(path):
            files.append(path)
    return files


def lstm_lm_words(binary, path, tmp):
    tok = os.path.join(tmp, "tokenizer.json")
    subprocess.run(
        [binary, "tokenize", "--kind", "word", "--segment", "jieba", "--input", path, "--out", tok],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    out = subprocess.run(
        [binary, "encode", "--tokenizer", tok, "--tokens", "--json", path],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    lines = []
    for line in out.splitlines():
        tokens = json.loads(line)
        if tokens and tokens[-1] == "<eos>":
            tokens.pop()
        lines.append(tokens)
    return lines


def ratio(a, b):
    return a / b if b else 1.0


def f1(p, r):
    return 2 * p * r / (p + r) if p + r else 0.0


def check_file(binary, jieba, path, tmp):
    with open(path, encoding="utf-8", newline="") as f:
        text = ESCAPES.sub("", f.read()).replace("\r", "")
    clean = os.path.join(tmp, "input.txt")
    with open(clean, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    ours = lstm_lm_words(binary, clean, tmp)
    if len(ours) != len(lines):
        sys.exit(f"{path}: lstm-lm printed {len(ours)} lines for {len(lines)}")
    totals = dict(same_lines=0, ours=0, theirs=0, matched=0, zh_ours=0, zh_theirs=0, zh_matched=0)
    examples = []
    for line, our_words in zip(lines, ours):
        their_words = [w for w in jieba.cut(line, HMM=True) if w.strip()]
        if "".join(our_words) != "".join(their_words):
            sys.exit(f"{path}: the two sides read different characters in line {line!r}")
        mine, theirs = spans(our_words), spans(their_words)
        common = set(mine) & set(theirs)
        totals["same_lines"] += our_words == their_words
        totals["ours"] += len(mine)
        totals["theirs"] += len(theirs)
        totals["matched"] += len(common)
        totals["zh_ours"] += sum(s[2] for s in mine)
        totals["zh_theirs"] += sum(s[2] for s in theirs)
        totals["zh_matched"] += sum(s[2] for s in common)
        zh_differs = {s for s in set(mine) ^ set(theirs) if s[2]}
        if zh_differs and len(examples) < 3:
            examples.append((our_words, their_words))
    p = ratio(totals["matched"], totals["ours"])
    r = ratio(totals["matched"], totals["theirs"])
    zp = ratio(totals["zh_matched"], totals["zh_ours"])
    zr = ratio(totals["zh_matched"], totals["zh_theirs"])
    name = os.path.relpath(path, os.getcwd())
    print(
        f"{name}: {len(lines)} lines, {totals['same_lines'] / max(len(lines), 1):.2%} identical; "
        f"all words: {totals['theirs']} jieba / {totals['ours']} lstm-lm, "
        f"P {p:.4%} R {r:.4%} F1 {f1(p, r):.4%}; "
        f"Chinese words: {totals['zh_theirs']} / {totals['zh_ours']}, "
        f"P {zp:.4%} R {zr:.4%} F1 {f1(zp, zr):.4%}"
    )
    for mine, theirs in examples:
        print(f"  lstm-lm: {' / '.join(mine)}\n  jieba:   {' / '.join(theirs)}")
    return f1(zp, zr)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bin", default="target/release/lstm-lm", help="the lstm-lm binary")
    parser.add_argument("--min-f1", type=float, default=0.999)
    parser.add_argument("files", nargs="*")
    args = parser.parse_args()
    import jieba

    jieba.setLogLevel(60)
    print(f"jieba {jieba.__version__}")
    files = args.files or default_files()
    if not files:
        sys.exit("no files: pass some, or put ../shared beside the repository")
    worst = 1.0
    with tempfile.TemporaryDirectory() as tmp:
        for path in files:
            worst = min(worst, check_file(args.bin, jieba, path, tmp))
    if worst < args.min_f1:
        print(f"lowest Chinese-word F1 {worst:.4%} is below {args.min_f1:.2%}")
        sys.exit(1)


if __name__ == "__main__":
    main()
