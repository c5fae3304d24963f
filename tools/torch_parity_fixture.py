#!/usr/bin/env python3
"""Writes crates/model/tests/model/fixtures/torch_parity.json: weights, inputs and PyTorch's outputs
for a small Embedding -> 2-layer LSTM/GRU -> Linear model, checked by
crates/model/tests/model/torch_parity.rs to 1e-5.

Run from the repository root with a Python that has torch:
    python3 tools/torch_parity_fixture.py
The fixture is committed; `cargo test` needs no Python.
"""
import json
import os

import torch
import torch.nn as nn

VOCAB, EMB, HID, LAYERS, BATCH, TIME = 11, 6, 5, 2, 2, 4


def case(cell: str, seed: int) -> dict:
    torch.manual_seed(seed)
    encoder = nn.Embedding(VOCAB, EMB)
    rnn = (nn.LSTM if cell == "lstm" else nn.GRU)(EMB, HID, LAYERS, batch_first=True)
    decoder = nn.Linear(HID, VOCAB)
    # Biases are random too (PyTorch's defaults already are) so that every term is exercised.
    ids = torch.randint(0, VOCAB, (BATCH, TIME))
    h0 = torch.randn(LAYERS, BATCH, HID) * 0.5
    c0 = torch.randn(LAYERS, BATCH, HID) * 0.5
    with torch.no_grad():
        x = encoder(ids)
        if cell == "lstm":
            out, (hn, cn) = rnn(x, (h0, c0))
        else:
            out, hn = rnn(x, h0)
            cn = None
        logits = decoder(out)

    def named(name, t):
        return {"name": name, "shape": list(t.shape), "data": [float(v) for v in t.reshape(-1)]}

    weights = [named("encoder.weight", encoder.weight.detach())]
    for k in range(LAYERS):
        for part in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            weights.append(named(f"rnn.{part}_l{k}", getattr(rnn, f"{part}_l{k}").detach()))
    weights.append(named("decoder.weight", decoder.weight.detach()))
    weights.append(named("decoder.bias", decoder.bias.detach()))
    result = {
        "cell": cell,
        "vocab_size": VOCAB,
        "embedding_size": EMB,
        "hidden_size": HID,
        "num_layers": LAYERS,
        "ids": ids.tolist(),
        "weights": weights,
        "h0": named("h0", h0),
        "logits": named("logits", logits),
        "h_n": named("h_n", hn),
    }
    if cell == "lstm":
        result["c0"] = named("c0", c0)
        result["c_n"] = named("c_n", cn)
    return result


def main():
    fixture = {
        "generated_by": "tools/torch_parity_fixture.py",
        "torch_version": torch.__version__,
        "cases": [case("lstm", 1), case("gru", 2)],
    }
    path = os.path.join("crates", "model", "tests", "model", "fixtures", "torch_parity.json")
    with open(path, "w") as f:
        json.dump(fixture, f)
        f.write("\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
