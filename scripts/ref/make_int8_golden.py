#!/usr/bin/env python3
"""Independent reference for the 8-bit inference modes (LLM.int8() and SmoothQuant's W8A8): a plain numpy
Llama forward pass over SmolLM2-135M-Instruct, written from the papers and their reference code, not from
ctrust's sources. Writes tests/golden/int8_smollm2.json, which GoldenEngine.SmolLM2Int8ModesMatchNumpyReference
checks ctrust against.

Modes:
  f32        the model as stored (Q4_1 dequantized by the gguf package), no rounding.
  w8a8_act   every Linear input of the 30 blocks rounded per token (row) to int8, absmax scaling, as
             SmoothQuant's fake_quant.py quantize_activation_per_token_absmax does
             (scale = max(|x_row|, 1e-5) / 127, x -> round(x / scale) * scale, torch.round = ties to even).
             Weights unchanged: this isolates the activation rounding that W8A8 applies at inference
             (ctrust: LinearMode::W8A8).
  llm_int8   LLM.int8() (Dettmers et al. 2022) as bitsandbytes computes it (MatMul8bitLt with
             has_fp16_weights=False, i.e. load_in_8bit; bitsandbytes/backends/default/ops.py:
             int8_vectorwise_quant and int8_mixed_scaled_mm), in f32 instead of fp16: the weights are int8 per
             output row, CB = round(W * 127 / SCB) with SCB = absmax of the whole row; for every Linear call,
             outliers = |X| >= threshold, outlier columns O = columns with an outlier; each row of X is scaled by
             its absmax over the non-outlier entries (outlier values zeroed, the other entries of an outlier
             column count), rounded, and its O columns zeroed; y = (CA * SCA/127) @ (CB * SCB/127)^T +
             X[:, O] @ (CB[:, O] * SCB/127)^T. Threshold 6.0. (ctrust: compress --method int8, whose files hold
             CB/SCB, and LinearMode::Int8Outlier.)
Per mode: the perplexity and its paired ln ratio to f32 over --chunks chunks, and the mean full-vocabulary token
KL(f32 || mode) over the first --kl-chunks chunks. llama.cpp's perplexity protocol, ctx 512, on llama.cpp's
tokenization of wiki.test.raw (the chunk tokens stored in tests/golden/logits_smollm2.json; beyond 8 chunks,
llama-cpp-python's tokenizer). Like ctrust's perplexity, each chunk runs as two calls of 256 tokens (the second
with the first's KV cache), so LLM.int8()'s outlier columns are found over 256 rows per call; the Linear calls
are split the same way here.

Why the test compares the KL and not the perplexity: the perplexity change of these modes is chaotic in the
details. Scaling every int8 scale by (1 +- 1e-6) here moves the 8-chunk ln(PPL ratio) of w8a8_act between
0.019 and 0.036, while the mean KL over 2 chunks stays within 0.0271-0.0289 (int8: 0.0151-0.0159). numpy's and
ctrust's f32 sums differ in the last bits, which is such a perturbation, so only the KL can be compared tightly.

The perturbation study: `--out - --jitter 1e-6` (and -1e-6, 3e-6), 8 chunks.

The layer check (GoldenEngine.SmolLM2Int8LinearsMatchNumpyReference; --layers-only rewrites only it): the real
inputs of four Linears (LAYER_LINEARS) in the f32 forward of chunk 0 and numpy's outputs of both modes on four of
those rows taken as one call, in tests/golden/int8_layers_smollm2.bin (little-endian f32; offsets in "layers").

Usage: python3 scripts/ref/make_int8_golden.py [--chunks N] [--kl-chunks K] [--out FILE|-] [--jitter EPS] [--layers-only]
(needs numpy and gguf, and beyond 8 chunks llama-cpp-python: scripts/setup_ref.sh)
"""
import argparse
import json
import math
import os
import time

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.environ.get("CTRUST_CACHE", os.path.expanduser("~/.cache/ctrust"))
GOLDEN = os.path.join(ROOT, "tests", "golden")
MODEL = os.path.join(CACHE, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")


def field(r, key):
    f = r.fields[key]
    v = f.parts[f.data[0]]
    return v.tobytes().decode() if f.types and f.types[0].name == "STRING" else v[0].item()


def load(path):
    r = GGUFReader(path)
    cfg = {k: field(r, "llama." + k) for k in ("embedding_length", "block_count", "attention.head_count",
                                                "attention.head_count_kv", "rope.freq_base",
                                                "attention.layer_norm_rms_epsilon")}
    w = {}
    for t in r.tensors:
        a = dequantize(t.data, t.tensor_type).astype(np.float32)
        w[t.name] = a.reshape([int(x) for x in reversed(t.shape)]) if len(t.shape) > 1 else a.reshape(-1)
    return cfg, w


JITTER = 0.0  # --jitter: every int8 scale times (1 + JITTER), to show how chaotic the perplexity change is


def quant_rows(x):  # per-row absmax int8 fake quantization (SmoothQuant fake_quant.py)
    s = np.maximum(np.abs(x).max(axis=1, keepdims=True), 1e-5) / 127.0 * np.float32(1.0 + JITTER)
    return np.round(x / s) * s


_int8_weights = {}


def bnb_weight(W):  # bitsandbytes int8_vectorwise_quant(B): CB * SCB / 127, SCB = row absmax (cached per tensor)
    key = id(W)
    if key not in _int8_weights:
        scb = np.abs(W).max(axis=1, keepdims=True).astype(np.float32)
        cb = np.round(W * (np.float32(127.0) / scb))
        _int8_weights[key] = (cb * (scb / np.float32(127.0) * np.float32(1.0 + JITTER))).astype(np.float32)
    return _int8_weights[key]


def make_linear(mode, threshold=6.0):
    def lin(x, W):
        if mode == "f32":
            return x @ W.T
        if mode == "w8a8_act":
            return quant_rows(x) @ W.T
        Wq = bnb_weight(W)
        outliers = np.abs(x) >= threshold
        cols = outliers.any(axis=0)
        xa = np.where(outliers, np.float32(0.0), x)
        sca = np.abs(xa).max(axis=1, keepdims=True).astype(np.float32)
        safe = np.where(sca > 0, sca, np.float32(1.0))
        ca = np.where(sca > 0, np.round(xa * (np.float32(127.0) / safe)), np.float32(0.0))
        ca[:, cols] = 0
        y = (ca * (safe / np.float32(127.0) * np.float32(1.0 + JITTER))) @ Wq.T
        if cols.any():
            y += x[:, cols] @ Wq[:, cols].T
        return y
    return lin


def rmsnorm(x, g, eps):
    return x / np.sqrt((x.astype(np.float64) ** 2).mean(axis=1, keepdims=True) + eps).astype(np.float32) * g


def forward_chunk(cfg, w, tokens, lin, split):
    """Logits of every position of one chunk; every Linear is called on rows [0, split) and [split, n)."""
    dim, L = cfg["embedding_length"], cfg["block_count"]
    H, KV = cfg["attention.head_count"], cfg["attention.head_count_kv"]
    hd, eps, base = dim // H, cfg["attention.layer_norm_rms_epsilon"], cfg["rope.freq_base"]
    n = len(tokens)

    def call(x, W):
        return np.concatenate([lin(x[:split], W), lin(x[split:], W)], axis=0).astype(np.float32)

    pos = np.arange(n, dtype=np.float64)[:, None]
    inv = base ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)
    ang = pos * inv[None, :]
    cos, sin = np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)

    def rope(q, nh):  # GGUF llama layout: adjacent pairs (x[2i], x[2i+1]) rotate together
        q = q.reshape(n, nh, hd // 2, 2)
        a, b = q[..., 0], q[..., 1]
        c, s = cos[:, None, :], sin[:, None, :]
        return np.stack([a * c - b * s, a * s + b * c], axis=-1).reshape(n, nh, hd)

    x = w["token_embd.weight"][tokens].copy()
    mask = np.triu(np.full((n, n), -np.inf, dtype=np.float32), 1)
    for l in range(L):
        p = f"blk.{l}."
        h = rmsnorm(x, w[p + "attn_norm.weight"], eps)
        q = rope(call(h, w[p + "attn_q.weight"]), H)
        k = rope(call(h, w[p + "attn_k.weight"]), KV)
        v = call(h, w[p + "attn_v.weight"]).reshape(n, KV, hd)
        out = np.empty((n, H, hd), dtype=np.float32)
        for hh in range(H):
            kv = hh // (H // KV)
            sc = (q[:, hh, :] @ k[:, kv, :].T) / np.float32(math.sqrt(hd)) + mask
            sc = np.exp(sc - sc.max(axis=1, keepdims=True))
            out[:, hh, :] = (sc / sc.sum(axis=1, keepdims=True)) @ v[:, kv, :]
        x = x + call(out.reshape(n, dim), w[p + "attn_output.weight"])
        h = rmsnorm(x, w[p + "ffn_norm.weight"], eps)
        g = call(h, w[p + "ffn_gate.weight"])
        u = call(h, w[p + "ffn_up.weight"])
        x = x + call(g / (1.0 + np.exp(-g)) * u, w[p + "ffn_down.weight"])
    h = rmsnorm(x, w["output_norm.weight"], eps)
    head = w.get("output.weight", w["token_embd.weight"])
    return h @ head.T  # the output head is not quantized by either method


def run_mode(cfg, w, chunks, lin, ctx, kl_chunks, base=None):
    """Per chunk, the NLL of each scored token (positions ctx/2 .. ctx-2 predict the next token); the
    log-softmax of the scored rows of the first kl_chunks chunks (base is None) or, given the f32 run's,
    the full-vocabulary KL(f32 || this mode) of each of those rows."""
    first, nll, lsms, kls = ctx // 2, [], [], []
    for i, toks in enumerate(chunks):
        logits = forward_chunk(cfg, w, np.array(toks), lin, first).astype(np.float64)[first:ctx - 1]
        mx = logits.max(axis=1, keepdims=True)
        lsm = logits - mx - np.log(np.exp(logits - mx).sum(axis=1, keepdims=True))
        nll.append(-lsm[np.arange(len(lsm)), np.array(toks[first + 1:ctx])])
        if i < kl_chunks:
            if base is None:
                lsms.append(lsm)
            else:
                kls.append((np.exp(base[i]) * (base[i] - lsm)).sum(axis=1))
    return np.array(nll), lsms, (np.concatenate(kls) if kls else None)


def text_chunks(n, ctx):
    g = json.load(open(os.path.join(GOLDEN, "logits_smollm2.json")))["perplexity"]
    toks = g["tokens"]
    if n * ctx > len(toks):  # more than the golden file holds: llama.cpp's tokenization of the whole text
        from llama_cpp import Llama
        shared = os.environ.get("CTRUST_SHARED", os.path.join(ROOT, "..", "shared"))
        text = open(os.path.join(shared, "data", "wikitext-2-raw", "wiki.test.raw"), "rb").read()
        llm = Llama(model_path=MODEL, vocab_only=True, verbose=False)
        toks = llm.tokenize(text, add_bos=True, special=False)  # adds BOS only if the vocabulary does
        if g["add_bos"]:
            assert toks[0] == llm.token_bos()
    chunks = [list(toks[i * ctx:(i + 1) * ctx]) for i in range(n)]
    if g["add_bos"]:  # llama.cpp's protocol: the chunk's first token is replaced by BOS (SmolLM2 adds none)
        for c in chunks:
            c[0] = toks[0]
    return chunks


# The layer check (GoldenEngine.SmolLM2Int8LinearsMatchNumpyReference): real inputs of these Linears, captured in
# the f32 forward of chunk 0 (its first call of 256 rows), and numpy's outputs of both modes on LAYER_ROWS of those
# rows taken as one call (so the outlier columns are found over these rows). Deterministic, unlike the end-to-end
# KL, which moves by up to ~17% with the BLAS kernels' summation order (docs/correctness.md).
LAYER_LINEARS = ["blk.8.ffn_down.weight", "blk.11.ffn_down.weight", "blk.22.ffn_down.weight", "blk.27.attn_q.weight",
                 "blk.29.attn_q.weight"]
LAYER_ROWS = [0, 85, 170, 255]


def layer_golden(cfg, w, chunks, ctx, out_bin):
    names = {id(w[n]): n for n in LAYER_LINEARS}
    seen = {}
    f32 = make_linear("f32")

    def capture(x, W):
        n = names.get(id(W))
        if n is not None and n not in seen:
            seen[n] = x[LAYER_ROWS].astype(np.float32).copy()
        return f32(x, W)

    forward_chunk(cfg, w, np.array(chunks[0]), capture, ctx // 2)
    index, blobs, off = [], [], 0
    for n in LAYER_LINEARS:
        x, W = seen[n], w[n]
        ent = {"tensor": n, "rows": len(LAYER_ROWS), "in": int(W.shape[1]), "out": int(W.shape[0]),
               "outlier_columns": int((np.abs(x) >= 6.0).any(axis=0).sum()),
               "inputs_between_5_and_7": int(((np.abs(x) > 5.0) & (np.abs(x) <= 7.0)).sum())}
        for key, arr in (("x", x), ("w8a8_act", make_linear("w8a8_act")(x, W)),
                         ("llm_int8", make_linear("llm_int8")(x, W))):
            a = np.ascontiguousarray(arr, dtype="<f4")
            ent[key] = off
            blobs.append(a.tobytes())
            off += a.size
        index.append(ent)
        print(f"layer golden {n}: {ent['outlier_columns']} outlier columns, "
              f"{ent['inputs_between_5_and_7']} inputs with 5 < |x| <= 7", flush=True)
    if out_bin:
        with open(out_bin, "wb") as f:
            f.write(b"".join(blobs))
    return {"file": os.path.basename(out_bin) if out_bin else None, "row_of_call": LAYER_ROWS, "linears": index}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=8, help="chunks of 512 tokens for the perplexities")
    ap.add_argument("--kl-chunks", type=int, default=2, help="the first chunks, for the token KL (the test's)")
    ap.add_argument("--out", default=os.path.join(GOLDEN, "int8_smollm2.json"), help="'-': print only")
    ap.add_argument("--jitter", type=float, default=0.0,
                    help="scale every int8 scale by (1 + JITTER), e.g. 1e-6 (only with --out -)")
    ap.add_argument("--layers-only", action="store_true",
                    help="only (re)write the layer check's part of the golden (int8_layers_smollm2.bin, 'layers')")
    a = ap.parse_args()
    global JITTER
    JITTER = a.jitter
    if JITTER and a.out != "-":
        ap.error("--jitter is a study, not a golden: use --out -")
    ctx = 512
    chunks = text_chunks(a.chunks, ctx)
    cfg, w = load(MODEL)
    layers = layer_golden(cfg, w, chunks, ctx,
                          None if a.out == "-" else os.path.join(os.path.dirname(a.out), "int8_layers_smollm2.bin"))
    if a.layers_only:
        if a.out != "-":
            res = json.load(open(a.out))
            res["layers"] = layers
            with open(a.out, "w") as f:
                json.dump(res, f, indent=1)
            print("wrote", a.out)
        return
    res = {"generator": "scripts/ref/make_int8_golden.py", "numpy": np.__version__, "model": os.path.basename(MODEL),
           "ctx": ctx, "chunks": a.chunks, "kl_chunks": a.kl_chunks, "threshold": 6.0, "modes": {},
           "layers": layers}
    nll = {}
    base = None
    for mode in ("f32", "w8a8_act", "llm_int8"):
        t0 = time.time()
        nll[mode], lsms, kl = run_mode(cfg, w, chunks, make_linear(mode), ctx, a.kl_chunks, base)
        base = base or lsms
        ppl = math.exp(nll[mode].mean())
        res["modes"][mode] = {"ppl": ppl, "chunk_nll": nll[mode].mean(axis=1).tolist()}
        if kl is not None:
            res["modes"][mode]["kl_mean"] = kl.mean()
            res["modes"][mode]["kl_stderr"] = kl.std(ddof=1) / math.sqrt(len(kl))
        print(f"{mode:9s} PPL {ppl:.6f}  ({time.time() - t0:.1f} s)", flush=True)
    for mode in ("w8a8_act", "llm_int8"):
        d = (nll[mode] - nll["f32"]).reshape(-1)  # ln(PPL ratio) per token, paired
        se = d.std(ddof=1) / math.sqrt(len(d))
        m = res["modes"][mode]
        m["ln_ratio"], m["ln_ratio_stderr"] = d.mean(), se
        print(f"{mode:9s} PPL / f32 = {math.exp(d.mean()):.5f}  (ln ratio {d.mean():.5f} +- {se:.5f}); "
              f"mean KL over {a.kl_chunks} chunks {m['kl_mean']:.5f} +- {m['kl_stderr']:.5f}")
    if a.out != "-":
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)
        print("wrote", a.out)


if __name__ == "__main__":
    main()
