#!/usr/bin/env python3
"""How far llama.cpp moves from itself when only the order of its float operations changes: the floor any
independent f32 implementation (ctrust) can be expected to reach against it. Runs llama.cpp (llama-cpp-python,
installed by scripts/setup_ref.sh) on an F32 GGUF with the golden file's tokens, once with the golden's settings
(all tokens in one micro-batch: ggml's batched matrix products) and again with other micro-batch sizes (1 = the
token-by-token vector path: other kernels, other summation order), and prints the largest difference of the
next-token log-probability per text, beside the same statistic of the golden file itself (ctrust's test compares
its own values with that file).

Usage: python3 scripts/ref/float_floor.py GOLDEN.json F32.gguf [UBATCH ...]     (default UBATCH: 1 7)
e.g.   python3 scripts/ref/float_floor.py tests/golden/logits_gemma3-270m.json ~/.cache/ctrust/models/gemma-3-270m.F32.gguf
"""
import json
import math
import sys

import numpy as np


def next_logprobs(llm, tokens):
    llm.reset()
    llm.eval(tokens)
    lg = np.array(llm.scores[:len(tokens)], dtype=np.float64)
    mx = lg.max(axis=1, keepdims=True)
    lse = (mx + np.log(np.exp(lg - mx).sum(axis=1, keepdims=True)))[:, 0]
    nxt = np.array([lg[i, tokens[i + 1]] - lse[i] for i in range(len(tokens) - 1)])
    return nxt, lg.argmax(axis=1)


def main():
    import llama_cpp

    golden = json.load(open(sys.argv[1]))
    path = sys.argv[2]
    ubatches = [int(x) for x in sys.argv[3:]] or [1, 7]
    texts = golden["texts"]
    n_ctx = 512 if max(len(t["tokens"]) for t in texts.values()) <= 512 else 1024

    def open_llama(ub):
        return llama_cpp.Llama(model_path=path, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=ub, n_threads=2,
                               n_threads_batch=2, logits_all=True, type_k=0, type_v=0, flash_attn=False,
                               verbose=False)

    print(f"llama.cpp {llama_cpp.__version__}, {path}, golden {sys.argv[1]} ({golden['settings']})")
    base = {}
    llm = open_llama(n_ctx)
    for k, t in texts.items():
        base[k] = next_logprobs(llm, t["tokens"])
        g = np.array([p["next"] for p in t["positions"][:-1]])
        print(f"  {k:14s} {len(t['tokens']):4d} tokens: ubatch {n_ctx} vs the golden file: max |d| "
              f"{np.abs(base[k][0] - g).max():.2e} (the file rounds to 1e-6)")
    del llm
    for ub in ubatches:
        llm = open_llama(ub)
        for k, t in texts.items():
            nxt, am = next_logprobs(llm, t["tokens"])
            d = np.abs(nxt - base[k][0])
            print(f"  {k:14s} ubatch {ub:3d} vs {n_ctx}: max |d log p(next)| {d.max():.2e}, mean {d.mean():.2e}, "
                  f"argmax mismatches {int((am != base[k][1]).sum())}")
        del llm


if __name__ == "__main__":
    main()
