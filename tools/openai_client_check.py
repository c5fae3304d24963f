#!/usr/bin/env python3
"""Calls a running `lstm-lm serve` with the OpenAI Python client (pip install openai):
completions (whole and streamed) and embeddings. Not part of `cargo test`.

    lstm-lm serve --model runs/sample &
    python3 tools/openai_client_check.py [--base-url http://127.0.0.1:8080/v1] [--model sample]
"""
import argparse

from openai import OpenAI


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base-url", default="http://127.0.0.1:8080/v1")
    p.add_argument("--model", default=None, help="default: the server's first model")
    p.add_argument("--api-key", default="unused", help="the token, with --token-file")
    a = p.parse_args()
    client = OpenAI(base_url=a.base_url, api_key=a.api_key)
    model = a.model or client.models.list().data[0].id
    r = client.completions.create(model=model, prompt="the keeper", max_tokens=12, seed=1)
    print("completion:", repr(r.choices[0].text), r.choices[0].finish_reason, r.usage)
    print("streamed:  ", end="")
    for chunk in client.completions.create(model=model, prompt="the keeper", max_tokens=12, stream=True):
        print(chunk.choices[0].text, end="", flush=True)
    print()
    e = client.embeddings.create(model=model, input=["the keeper", "the lamp"])
    print("embeddings:", len(e.data), "vectors of", len(e.data[0].embedding), "numbers; first:",
          [round(x, 4) for x in e.data[0].embedding[:4]])


if __name__ == "__main__":
    main()
