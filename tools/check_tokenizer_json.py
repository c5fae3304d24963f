#!/usr/bin/env python3
"""Check lstm-lm's tokenizer.json files against Python's `tokenizers`, and Keras (optional).

Not part of `cargo test`: it needs Python packages. In a virtual environment outside the repo:

    python3 -m venv /tmp/tp-venv && /tmp/tp-venv/bin/pip install tokenizers keras-preprocessing
    cargo build --release -p lstm-lm-cli
    /tmp/tp-venv/bin/python tools/check_tokenizer_json.py --bin target/release/lstm-lm FILE [--keras]

For each kind (keras-word with and without --num-words/--oov, word, char, bpe) it runs
`lstm-lm tokenize` on FILE, loads the result with `tokenizers.Tokenizer.from_file`, and checks
that Python encodes every line of FILE to the ids `lstm-lm encode --json` prints (for keras-word
without an OOV token, after dropping Python's zeros: Hugging Face cannot drop unknown words, so
the file maps them to 0). Lines containing a capital final sigma are left out of the keras-word
comparison: the library's Lowercase has no final-sigma rule, Python's str.lower and ours do.

With --keras it also fits keras_preprocessing's Tokenizer on the lines of FILE (each line one
text) and checks that its word_counts, word_index and texts_to_sequences equal ours, and prints
how fast Keras fits and encodes.

Exits 1 at the first mismatch, 0 when everything matches.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def lines_of(path):
    # newline="" keeps "\r": lstm-lm, like Keras given these lines, does not treat it as a break.
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    if not text:
        return []
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    return lines


def run(cmd):
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def ours_encoded(binary, tok_path, path):
    out = run([binary, "encode", "--tokenizer", tok_path, "--json", path])
    return [json.loads(line) for line in out.splitlines()]


def first_mismatch(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def check_python_tokenizers(binary, path, lines, workdir):
    from tokenizers import Tokenizer

    cases = [
        ("keras-word", []),
        ("keras-word", ["--num-words", "1000", "--oov", "<OOV>"]),
        ("keras-word", ["--num-words", "1000"]),
        ("word", []),
        ("char", []),
        ("bpe", ["--vocab-size", "2000"]),
    ]
    for i, (kind, flags) in enumerate(cases):
        tok_path = os.path.join(workdir, f"tok{i}.json")
        run([binary, "tokenize", "--kind", kind, *flags, "--input", path, "--out", tok_path])
        hf = Tokenizer.from_file(tok_path)
        ours = ours_encoded(binary, tok_path, path)
        theirs = [e.ids for e in hf.encode_batch(lines)]
        drop_zeros = kind == "keras-word" and "--oov" not in flags
        skipped = 0
        for n, (line, a, b) in enumerate(zip(lines, ours, theirs), start=1):
            if kind == "keras-word" and "\u03a3" in line:
                skipped += 1
                continue
            if drop_zeros:
                b = [x for x in b if x != 0]
            if a != b:
                sys.exit(f"FAIL {kind} {flags}: line {n} {line!r}: lstm-lm {a} python {b}")
        if len(ours) != len(lines):
            sys.exit(f"FAIL {kind}: lstm-lm printed {len(ours)} lines for {len(lines)}")
        note = f" ({skipped} lines with a capital sigma skipped)" if skipped else ""
        print(f"ok   python tokenizers {kind} {' '.join(flags)}: {len(lines)} lines, same ids{note}")
        if kind in ("char", "bpe"):
            with open(path, encoding="utf-8", newline="") as f:
                text = f.read()
            whole = hf.encode(text).ids
            flat = run([binary, "encode", "--tokenizer", tok_path, "--json", path])
            if kind == "char":
                # Per-line ids joined with the id of "\n" are the whole text's ids.
                nl = hf.token_to_id("\n")
                joined = []
                for k, ids in enumerate(json.loads(l) for l in flat.splitlines()):
                    joined.extend(ids)
                    if k < len(lines) - 1 or text.endswith("\n"):
                        joined.append(nl)
                if joined != whole:
                    sys.exit(f"FAIL char: whole-text ids differ at {first_mismatch(joined, whole)}")
                print("ok   python tokenizers char: whole text, same ids")
            else:
                back = hf.decode(whole)
                if back != text:
                    sys.exit("FAIL bpe: python decode(encode(text)) is not the text")
                print("ok   python tokenizers bpe: whole text decodes back exactly")


def check_keras(binary, path, lines, workdir):
    try:
        from keras_preprocessing.text import Tokenizer as KerasTokenizer
    except ImportError as e:
        print(f"skip keras: {e}")
        return
    for flags, kwargs in [([], {}), (["--num-words", "5000", "--oov", "<OOV>"], {"num_words": 5000, "oov_token": "<OOV>"})]:
        start = time.perf_counter()
        k = KerasTokenizer(**kwargs)
        k.fit_on_texts(lines)
        seqs = k.texts_to_sequences(lines)
        seconds = time.perf_counter() - start
        tokens = sum(len(s) for s in seqs)
        print(f"keras {kwargs or 'defaults'}: fit_on_texts + texts_to_sequences {seconds:.3f} s, "
              f"{tokens} tokens, {tokens / seconds / 1e6:.2f} M tokens/s")
        tok_path = os.path.join(workdir, "keras.json")
        run([binary, "tokenize", "--kind", "keras-word", *flags, "--input", path, "--out", tok_path])
        with open(tok_path, encoding="utf-8") as f:
            meta = json.load(f)["model"]["lstm_lm"]["keras"]
        if list(meta["word_counts"].items()) != list(k.word_counts.items()):
            sys.exit("FAIL keras: word_counts differ")
        # Our word_index, rebuilt from the saved counts exactly as Keras numbers them.
        order = sorted(meta["word_counts"].items(), key=lambda x: x[1], reverse=True)
        vocab = ([meta["oov_token"]] if meta["oov_token"] is not None else []) + [w for w, _ in order]
        ours_index = dict(zip(vocab, range(1, len(vocab) + 1)))
        if ours_index != k.word_index:
            sys.exit("FAIL keras: word_index differs")
        with open(tok_path, encoding="utf-8") as f:
            hf_vocab = json.load(f)["model"]["vocab"]
        limit = kwargs.get("num_words")
        expected_vocab = {w: i for w, i in k.word_index.items() if limit is None or i < limit or w == kwargs.get("oov_token")}
        got_vocab = {w: i for w, i in hf_vocab.items() if w != "<pad>"}
        if got_vocab != expected_vocab:
            sys.exit("FAIL keras: the tokenizer.json vocabulary is not Keras' word_index")
        ours = ours_encoded(binary, tok_path, path)
        i = first_mismatch(ours, seqs)
        if i is not None:
            sys.exit(f"FAIL keras: sequences differ at line {i + 1}: {lines[i]!r}")
        print(f"ok   keras {kwargs or 'defaults'}: word_counts, word_index ({len(k.word_index)} words) "
              f"and texts_to_sequences ({len(seqs)} lines) identical")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("file", help="UTF-8 text file, e.g. ../shared/datasets/wikitext-2/train.txt")
    p.add_argument("--bin", default="target/release/lstm-lm", help="the lstm-lm binary")
    p.add_argument("--keras", action="store_true", help="also compare with keras_preprocessing")
    a = p.parse_args()
    lines = lines_of(a.file)
    with tempfile.TemporaryDirectory() as workdir:
        check_python_tokenizers(a.bin, a.file, lines, workdir)
        if a.keras:
            check_keras(a.bin, a.file, lines, workdir)
    print("all checks passed")


if __name__ == "__main__":
    main()
