#!/usr/bin/env python3
"""Checks `lstm-lm export --format safetensors` against PyTorch.

Loads the exported state dict into torch.nn.Embedding + nn.LSTM/nn.GRU/nn.RNN + nn.Linear with
`load_state_dict(strict=True)` (pytorch/examples' word_language_model layout), runs a few
sentences through it and compares every token's log-probability with what
`lstm-lm score --json` prints for the same run. Tokens are matched by position: the ids come
from `lstm-lm encode` with the run's tokenizer, and the context convention is score's (a
word-level stream model starts from `<eos>` and scores every word and the closing `<eos>`;
otherwise the first token is context and the rest are scored).

`--numpy` replaces PyTorch with an independent numpy implementation of the same equations
(PyTorch's gate order: LSTM i,f,g,o; GRU r,z,n; RNN tanh), computed in float64, for machines
without PyTorch.

    python tools/torch_export_check.py --lstm-lm target/release/lstm-lm --run runs/sample \
        [--weights FILE.safetensors] [--numpy] [--tolerance 1e-4] [TEXT ...]

Without --weights the script exports the run itself into a temporary file. Prints one line per
sentence and a last line `max_abs_diff=...`; exits 1 when that exceeds --tolerance (or is not
a finite number).
"""
import argparse
import json
import math
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

DEFAULT_TEXTS = [
    "the keeper climbed the tower at dusk",
    "the lamp burned over the cold sea",
    "ships passed the rocks in the dark",
]


def read_safetensors(path):
    """Tensors (name -> float32 numpy array) and metadata, read by the file format's spec."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    metadata = header.pop("__metadata__", {}) or {}
    body = data[8 + n :]
    tensors = {}
    for name, info in header.items():
        if info["dtype"] != "F32":
            sys.exit(f"error: {path}: {name} is {info['dtype']}, this script reads F32")
        a, b = info["data_offsets"]
        tensors[name] = np.frombuffer(body[a:b], dtype="<f4").reshape(info["shape"]).copy()
    return tensors, metadata


def run_lstm_lm(exe, args, stdin=None):
    p = subprocess.run([exe] + args, input=stdin, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"error: lstm-lm {' '.join(args[:1])} failed: {p.stderr.strip()}")
    return p.stdout


def scored_ids(exe, run, text, recipe, tokenizer_kind, vocab):
    """(ids fed to the model, index of the first scored position) as `lstm-lm score` does."""
    out = run_lstm_lm(exe, ["encode", "--tokenizer", os.path.join(run, "tokenizer.json"), "--json"], text + "\n")
    ids = json.loads(out.strip().splitlines()[0])
    eos = vocab.get("<eos>") if tokenizer_kind == "word" else None
    if recipe == "stream" and eos is not None:
        return [eos] + ids, 1
    if eos is not None and ids and ids[-1] == eos:
        ids = ids[:-1]
    return ids, 1


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def numpy_logprobs(t, meta, ids):
    """Log-softmax of every position's logits, float64, from the equations."""
    cell = meta["cell"]
    layers = int(meta["num_layers"])
    hidden = int(meta["hidden_size"])
    w = {k: v.astype(np.float64) for k, v in t.items()}
    decoder = w.get("decoder.weight", w["encoder.weight"])
    xs = [w["encoder.weight"][i] for i in ids]
    for k in range(layers):
        wih, whh = w[f"rnn.weight_ih_l{k}"], w[f"rnn.weight_hh_l{k}"]
        bih, bhh = w[f"rnn.bias_ih_l{k}"], w[f"rnn.bias_hh_l{k}"]
        h = np.zeros(hidden)
        c = np.zeros(hidden)
        out = []
        for x in xs:
            gi = wih @ x + bih
            gh = whh @ h + bhh
            if cell == "lstm":
                g = gi + gh
                i, f, gg, o = np.split(g, 4)
                c = sigmoid(f) * c + sigmoid(i) * np.tanh(gg)
                h = sigmoid(o) * np.tanh(c)
            elif cell == "gru":
                ir, iz, inn = np.split(gi, 3)
                hr, hz, hn = np.split(gh, 3)
                r = sigmoid(ir + hr)
                z = sigmoid(iz + hz)
                n = np.tanh(inn + r * hn)
                h = (1.0 - z) * n + z * h
            else:
                h = np.tanh(gi + gh)
            out.append(h)
        xs = out
    logits = np.stack(xs) @ decoder.T + w["decoder.bias"]
    m = logits.max(axis=1, keepdims=True)
    return logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))


def torch_logprobs(t, meta, ids):
    """Log-softmax of every position's logits from PyTorch modules loaded with load_state_dict."""
    import torch
    from torch import nn

    cell = meta["cell"]
    vocab, emb = t["encoder.weight"].shape
    hidden, layers = int(meta["hidden_size"]), int(meta["num_layers"])

    class RNNModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Embedding(vocab, emb)
            rnn = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell]
            self.rnn = rnn(emb, hidden, layers, batch_first=True)
            self.decoder = nn.Linear(hidden, vocab)
            if "decoder.weight" not in t:
                self.decoder.weight = self.encoder.weight

        def forward(self, x):
            out, _ = self.rnn(self.encoder(x))
            return torch.log_softmax(self.decoder(out), dim=-1)

    model = RNNModel().eval()
    state = {k: torch.from_numpy(v) for k, v in t.items()}
    if "decoder.weight" not in state:
        state["decoder.weight"] = state["encoder.weight"]
    model.load_state_dict(state, strict=True)
    with torch.no_grad():
        return model(torch.tensor([ids]))[0].double().numpy()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lstm-lm", required=True, help="the lstm-lm binary")
    ap.add_argument("--run", required=True, help="the run folder that was exported")
    ap.add_argument("--weights", help="its safetensors export (default: export it now)")
    ap.add_argument("--numpy", action="store_true", help="numpy equations instead of PyTorch")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    ap.add_argument("texts", nargs="*", default=DEFAULT_TEXTS)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        weights = args.weights
        if weights is None:
            weights = os.path.join(tmp, "export.safetensors")
            run_lstm_lm(args.lstm_lm, ["export", "--model", args.run, "--format", "safetensors", "--out", weights])
        tensors, meta = read_safetensors(weights)
    with open(os.path.join(args.run, "tokenizer.json")) as f:
        vocab = json.load(f)["model"].get("vocab", {})
    if isinstance(vocab, list):  # Unigram-style [token, score] pairs
        vocab = {tok: i for i, (tok, _) in enumerate(vocab)}
    engine = "numpy" if args.numpy else "torch " + __import__("torch").__version__
    print(f"# {engine}; {meta.get('cell')} {meta.get('num_layers')} layer(s), hidden {meta.get('hidden_size')}, "
          f"vocab {meta.get('vocab_size')}, tied {meta.get('tie_weights')}, tokenizer {meta.get('tokenizer')}, recipe {meta.get('recipe')}")
    worst = 0.0
    for text in args.texts:
        scored = json.loads(run_lstm_lm(args.lstm_lm, ["score", "--model", args.run, "--json", text]).strip())
        ids, first = scored_ids(args.lstm_lm, args.run, text, meta.get("recipe", "stream"), meta.get("tokenizer"), vocab)
        logp = numpy_logprobs(tensors, meta, ids) if args.numpy else torch_logprobs(tensors, meta, ids)
        ours = [tok["logprob"] for tok in scored["tokens"]]
        theirs = [float(logp[p - 1, ids[p]]) for p in range(first, len(ids))]
        if len(ours) != len(theirs):
            sys.exit(f"error: {text!r}: lstm-lm scored {len(ours)} tokens, the reference {len(theirs)}")
        diff = max((abs(a - b) for a, b in zip(ours, theirs)), default=0.0)
        if not all(math.isfinite(v) for v in ours + theirs):
            diff = math.inf
        worst = max(worst, diff)
        print(f"{diff:.3e}  {len(ours):>3} tokens  total lstm-lm {sum(ours):.6f} reference {sum(theirs):.6f}  {text!r}")
    print(f"max_abs_diff={worst:.3e} tolerance={args.tolerance:g}")
    sys.exit(0 if worst <= args.tolerance else 1)


if __name__ == "__main__":
    main()
