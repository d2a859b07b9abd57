#!/usr/bin/env python3
"""llama.cpp's speed on the same evaluation items as bench/bench_eval (docs/benchmarks.md, "Evaluation").

Reads the token sequences bench_eval wrote with --dump (so both engines score exactly the same tokens) and
scores them with llama.cpp through llama-cpp-python's low-level API, two ways:
  --mode seq      ctrust's protocol: the shared prefix once, then for each choice the KV cache is cut back to
                  it (llama_memory_seq_rm) and only the remainder runs;
  --mode batched  llama.cpp's `perplexity --hellaswag / --multiple-choice` protocol: as many items as fit in
                  n_ctx packed in one batch, each choice its own sequence sharing the prefix tokens
                  (tools/perplexity/perplexity.cpp, hellaswag_score / multiple_choice_score).
Prints items/s and accuracy (argmax of the summed log-probs) as one JSON line.
  python3 scripts/ref/bench_llamacpp_eval.py REQUESTS.json --model M.gguf [--threads 1] [--mode seq|batched]
"""
import argparse, ctypes, json, math, time
import numpy as np
import llama_cpp as L


def log_softmax_rows(rows):
    m = rows.max(axis=1, keepdims=True)
    return rows - (m + np.log(np.exp(rows - m).sum(axis=1, keepdims=True)))


class Engine:
    def __init__(self, path, n_ctx, n_seq, threads):
        L.llama_backend_init()
        mp = L.llama_model_default_params()
        self.model = L.llama_model_load_from_file(path.encode(), mp)
        cp = L.llama_context_default_params()
        cp.n_ctx = n_ctx
        cp.n_batch = n_ctx
        cp.n_ubatch = 512
        cp.n_seq_max = n_seq
        cp.n_threads = threads
        cp.n_threads_batch = threads
        cp.kv_unified = True
        cp.type_k = 0  # F32 KV cache, like ctrust
        cp.type_v = 0
        self.ctx = L.llama_init_from_model(self.model, cp)
        self.mem = L.llama_get_memory(self.ctx)
        self.n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(self.model))
        self.batch = L.llama_batch_init(n_ctx, 0, n_seq)
        self.n_ctx = n_ctx

    def decode(self, entries):
        """entries: (token, pos, [seq ids], want_logits). Returns the batch indices with logits."""
        b = self.batch
        for i, (t, p, seqs, lg) in enumerate(entries):
            b.token[i] = t
            b.pos[i] = p
            b.n_seq_id[i] = len(seqs)
            for k, s in enumerate(seqs):
                b.seq_id[i][k] = s
            b.logits[i] = 1 if lg else 0
        b.n_tokens = len(entries)
        if L.llama_decode(self.ctx, b) != 0:
            raise RuntimeError("llama_decode failed")

    def logits(self, i):
        p = L.llama_get_logits_ith(self.ctx, i)
        return np.ctypeslib.as_array(p, shape=(self.n_vocab,)).copy()


def common_prefix(choices):
    toks = [c["tokens"] for c in choices]
    n = min(len(t) for t in toks) - 1
    k = 0
    while k < n and all(t[k] == toks[0][k] for t in toks):
        k += 1
    return k


def score_seq(eng, item):
    ch = item["choices"]
    p = common_prefix(ch)
    L.llama_memory_clear(eng.mem, True)
    eng.decode([(t, i, [0], i == p - 1) for i, t in enumerate(ch[0]["tokens"][:p])])
    last = eng.logits(p - 1)
    lls = []
    for c in ch:
        L.llama_memory_seq_rm(eng.mem, 0, p, -1)
        toks, n = c["tokens"], len(c["tokens"])
        rest = toks[p:n - 1]
        rows = [last]
        if rest:
            eng.decode([(t, p + i, [0], True) for i, t in enumerate(rest)])
            rows += [eng.logits(i) for i in range(len(rest))]
        lp = log_softmax_rows(np.stack(rows))  # row j predicts token p + j
        lls.append(sum(float(lp[j - p, toks[j]]) for j in range(c["ctx_len"], n)))
    return lls


def score_batched(eng, items, n_seq):
    """llama.cpp hellaswag_score packing: items until n_ctx tokens or n_seq sequences are used."""
    out, i0 = [], 0
    while i0 < len(items):
        entries, plan, n_cur, s0 = [], [], 0, 0
        i1 = i0
        while i1 < len(items):
            ch = items[i1]["choices"]
            p = common_prefix(ch)
            need = p + sum(len(c["tokens"]) - p for c in ch)
            if n_cur + need > eng.n_ctx or s0 + len(ch) > n_seq:
                break
            seqs = list(range(s0, s0 + len(ch)))
            base = len(entries)
            for k in range(p):
                entries.append((ch[0]["tokens"][k], k, seqs, k == p - 1))
            idx = []
            for s, c in enumerate(ch):
                start = len(entries)
                for k in range(p, len(c["tokens"])):
                    entries.append((c["tokens"][k], k, [s0 + s], k < len(c["tokens"]) - 1))
                idx.append(start)
            plan.append((i1, p, base + p - 1, idx))
            n_cur += need
            s0 += len(ch)
            i1 += 1
        if i1 == i0:
            raise RuntimeError(f"item {i0} does not fit in n_ctx {eng.n_ctx}")
        L.llama_memory_clear(eng.mem, True)
        eng.decode(entries)
        for (i, p, last_i, idx) in plan:
            ch = items[i]["choices"]
            last = eng.logits(last_i)
            lls = []
            for s, c in enumerate(ch):
                toks, n = c["tokens"], len(c["tokens"])
                rows = [last] + [eng.logits(idx[s] + j) for j in range(n - 1 - p)]
                lp = log_softmax_rows(np.stack(rows))
                lls.append(sum(float(lp[j - p, toks[j]]) for j in range(c["ctx_len"], n)))
            out.append(lls)
        i0 = i1
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("requests")
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--mode", choices=["seq", "batched"], default="seq")
    ap.add_argument("--ctx", type=int, default=2048)
    ap.add_argument("--seqs", type=int, default=64)
    a = ap.parse_args()
    req = json.load(open(a.requests))
    items = req["items"]
    eng = Engine(a.model, a.ctx, a.seqs if a.mode == "batched" else 1, a.threads)
    score_seq(eng, items[0])  # warm-up
    t0 = time.time()
    lls = [score_seq(eng, it) for it in items] if a.mode == "seq" else score_batched(eng, items, a.seqs)
    dt = time.time() - t0
    acc = sum(int(np.argmax(l)) == it["gold"] for l, it in zip(lls, items)) / len(items)
    print(json.dumps({"engine": "llama.cpp " + L.__version__, "model": a.model, "task": req["task"],
                      "num_fewshot": req["num_fewshot"], "mode": a.mode, "threads": a.threads, "items": len(items),
                      "seconds": round(dt, 3), "items_per_s": round(len(items) / dt, 3), "acc": round(acc, 4),
                      "ll_first": lls[0]}))


if __name__ == "__main__":
    main()
