#!/usr/bin/env python3
"""Regenerates tests/golden/eval_stories260k.json: per-choice log-likelihoods of a few multiple-choice
requests computed by llama.cpp (llama-cpp-python) on stories260K, so ctrust's scoring (request split,
shared-context KV reuse, log-softmax sums) is checked against an independent implementation.

The split follows lm-evaluation-harness: whole = tokenize(context + continuation, add_bos),
ctx = tokenize(context, add_bos), continuation tokens = whole[len(ctx):]. Each whole sequence is evaluated
from scratch (no cache reuse) with logits for every position.
Model: $CTRUST_CACHE/models/stories260K-f32.v3.gguf (written by scripts/ref/make_logits_golden.py).
"""
import json, math, os
import numpy as np
from llama_cpp import Llama

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.environ.get("CTRUST_CACHE", os.path.expanduser("~/.cache/ctrust"))
MODEL = os.path.join(CACHE, "models", "stories260K-f32.v3.gguf")

ITEMS = [
    {"context": "Lily went to the park. She saw a big", "choices": ["dog.", "tree and a red ball.", "sun"]},
    {"context": "Once upon a time, there was a little cat. It was very", "choices": ["happy.", "big.", "sad."]},
    {"context": "Tom and his mom went to the store to buy", "choices": ["milk", "a new toy for his sister", "bread."]},
]

def main():
    llm = Llama(model_path=MODEL, n_ctx=256, logits_all=True, n_threads=2, verbose=False,
                type_k=0, type_v=0, flash_attn=False)
    out = []
    for it in ITEMS:
        lls = []
        for ch in it["choices"]:
            cont = " " + ch
            whole = llm.tokenize((it["context"] + cont).encode(), add_bos=True, special=False)
            ctx = llm.tokenize(it["context"].encode(), add_bos=True, special=False)
            llm.reset()
            llm.eval(whole)
            logits = np.array(llm.scores[: len(whole)], dtype=np.float64)
            ll = 0.0
            for j in range(len(ctx), len(whole)):
                row = logits[j - 1]
                m = row.max()
                lse = m + math.log(np.exp(row - m).sum())
                ll += row[whole[j]] - lse
            lls.append(ll)
        out.append({"context": it["context"], "continuations": [" " + c for c in it["choices"]],
                    "choice_texts": it["choices"], "ll": lls})
    path = os.path.join(ROOT, "tests", "golden", "eval_stories260k.json")
    with open(path, "w") as f:
        json.dump({"model": "stories260K-f32 (v3 copy)", "items": out}, f, indent=1)
    print("wrote", path)

if __name__ == "__main__":
    main()
