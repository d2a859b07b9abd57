#!/usr/bin/env python3
"""Regenerates tests/golden/kld_stories260k.json and tests/golden/kld_smollm2.json: token-level KL divergence
of a base model and Q8_0-/Q4_0-rounded copies, computed with llama.cpp (llama-cpp-python) the way llama.cpp's
`perplexity --kl-divergence` does (tools/perplexity/perplexity.cpp):

  * text -> tokens with the vocabulary's add_bos; chunks of n_ctx tokens; the first token of each chunk is
    replaced by BOS when the vocabulary adds one; each chunk is evaluated from an empty cache; positions
    n_ctx/2 .. n_ctx-2 predict tokens n_ctx/2+1 .. n_ctx-1 and are scored;
  * "llamacpp16": llama.cpp's arithmetic, including its 16-bit baseline file: the base log-probabilities are
    stored as uint16 steps of (max_logit - min_logit)/65535 over at most 16 nats below the top logit, and
    tokens whose stored base log-prob is <= -16 are left out of the KL sum;
  * "exact": the same logits in float64, full-vocabulary KL(P_base || P_B) = sum p_base (log p_base - log p_B).

Models (all F32 so both engines do the same arithmetic; written by ctrust's GGUF writer):
  base  = stories260K-f32.v3.gguf / SmolLM2-135M-Instruct.F32.gguf (F32 copy of the Q4_1 weights)
  q8_0  = F32 copy of `ctrust convert --type q8_0` of the base (…q8_0.f32.gguf), same for q4_0
The natively quantized files (…q8_0.gguf, …q4_0.gguf) are also run: there llama.cpp rounds activations to 8
bits in its dot products, ctrust does not; those numbers are stored under "native" for the report only.
Make the files with:
  ctrust convert -m /work/shared/models/stories260K/stories260K-f32.gguf -o $C/stories260K.q8_0.gguf --type q8_0
  ctrust convert -m $C/stories260K.q8_0.gguf -o $C/stories260K.q8_0.f32.gguf --type f32      (and q4_0)
  ctrust convert -m $C/SmolLM2-135M-Instruct.Q4_1.gguf -o $C/SmolLM2-135M-Instruct.q8_0.gguf --type q8_0
  ctrust convert -m $C/SmolLM2-135M-Instruct.q8_0.gguf -o $C/SmolLM2-135M-Instruct.q8_0.f32.gguf --type f32
with C=~/.cache/ctrust/models. Text: the first TEXT_BYTES bytes of wikitext-2 test (cut after a newline).
"""
import hashlib, json, math, os, sys
import numpy as np
from llama_cpp import Llama

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.environ.get("CTRUST_CACHE", os.path.expanduser("~/.cache/ctrust"))
SHARED = os.environ.get("CTRUST_SHARED", os.path.join(ROOT, "..", "shared"))
M = os.path.join(CACHE, "models")
TEXT_BYTES = 3000

SETS = {
    "stories260k": dict(base="stories260K-f32.v3.gguf", prefix="stories260K", n_ctx=128, chunks=4),
    "smollm2": dict(base="SmolLM2-135M-Instruct.F32.gguf", prefix="SmolLM2-135M-Instruct", n_ctx=128, chunks=2),
}
F32 = np.float32


def text_prefix():
    with open(os.path.join(SHARED, "data", "wikitext-2-raw", "wiki.test.raw"), "rb") as f:
        b = f.read(TEXT_BYTES)
    return b[: b.rindex(b"\n") + 1]


def chunk_logits(path, tokens, n_ctx, n_chunks, bos):
    """Logits (float32) of positions n_ctx/2 .. n_ctx-2 of every chunk, and the chunks."""
    llm = Llama(model_path=path, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, logits_all=True, n_threads=2,
                verbose=False, type_k=0, type_v=0, flash_attn=False)
    first = n_ctx // 2
    rows, chunks = [], []
    for c in range(n_chunks):
        chunk = list(tokens[c * n_ctx:(c + 1) * n_ctx])
        if bos is not None:
            chunk[0] = bos
        llm.reset()
        llm.eval(chunk)
        rows.append(np.array(llm.scores[first:n_ctx - 1], dtype=F32))
        chunks.append(chunk)
    del llm
    return np.concatenate(rows), chunks


def nearest_int(x):  # llama.cpp's nearest_int: float32 round half to even
    return np.rint(x.astype(F32)).astype(np.int64)


def encode16(l):
    """llama.cpp log_softmax(n_vocab, logits, uint16_t*, tok): (scale, min_log_prob, q[])."""
    mx = F32(l.max())
    mn = F32(max(F32(l.min()), F32(mx - F32(16))))
    sum_exp = float(np.exp((l - mx).astype(F32), dtype=F32).astype(np.float64).sum())
    lse = F32(math.log(sum_exp))
    min_log_prob = F32(F32(mn - mx) - lse)
    scale = F32(F32(mx - mn) / F32(65535))
    if scale == 0:
        return scale, min_log_prob, np.zeros(l.shape, dtype=np.int64)
    inv = F32(F32(1) / scale)
    q = np.where(l > mn, nearest_int(inv * (l - mn).astype(F32)), 0)
    return scale, min_log_prob, q


def token16(lq, enc, tok):
    """llama.cpp log_softmax(n_vocab, logits, base_log_prob, tok, kld): (kl, p_diff, nll, nll_base, same_top)."""
    scale, min_log_prob, q = enc
    imax = int(np.argmax(lq))
    mx = F32(lq[imax])
    sum_exp = float(np.exp((lq - mx).astype(F32), dtype=F32).astype(np.float64).sum())
    lse = F32(math.log(sum_exp))
    nll = F32(F32(mx + lse) - lq[tok])
    plb = (scale * q.astype(F32) + min_log_prob).astype(F32)
    nll_base = -F32(plb[tok])
    mx = F32(mx + lse)
    imax_base = int(np.argmax(plb))
    keep = plb > F32(-16)
    pb = np.exp(plb[keep], dtype=F32)
    terms = (pb * ((plb[keep] - lq[keep]).astype(F32) + mx).astype(F32)).astype(F32)
    kl = float(terms.astype(np.float64).sum())
    p_diff = float(F32(np.exp(F32(-nll)) - np.exp(F32(-nll_base))))
    return kl, p_diff, float(nll), float(nll_base), imax == imax_base


def log_softmax64(l):
    x = l.astype(np.float64)
    m = x.max()
    return x - (m + math.log(np.exp(x - m).sum()))


def token_exact(lb, lq, tok):
    a, b = log_softmax64(lb), log_softmax64(lq)
    kl = float((np.exp(a) * (a - b)).sum())
    return max(0.0, kl), float(math.exp(b[tok]) - math.exp(a[tok])), float(-b[tok]), float(-a[tok]), \
        int(np.argmax(lb)) == int(np.argmax(lq))


def stats(kl, dp, nll, nll_base, same):
    """llama.cpp's summary (mean_and_uncertainty, percentile with linear interpolation, middle-pair median)."""
    n = len(kl)

    def mu(v):
        v = np.asarray(v, dtype=np.float64)
        f = v.sum() / n
        d = (v * v).sum() / n - f * f
        return f, (math.sqrt(d / (n - 1)) if d > 0 and n > 10 else 0.0)

    def pct(v, frac):
        v = np.sort(np.asarray(v, dtype=np.float64))
        if frac <= 0: return float(v[0])
        if frac >= 1: return float(v[-1])
        p = frac * (len(v) - 1)
        i = int(p); p -= i
        return float((1 - p) * v[i] + p * v[min(i + 1, len(v) - 1)])

    fr = [1.0, 0.999, 0.99, 0.95, 0.90, 0.5, 0.10, 0.05, 0.01, 0.001, 0.0]
    kl_m, kl_s = mu(kl)
    dp_m, dp_s = mu(dp)
    lq, lb = mu(nll), mu(nll_base)
    d = np.asarray(nll) - np.asarray(nll_base)
    ratio, ratio_s = mu(d)
    cor = float(np.corrcoef(nll, nll_base)[0, 1])
    st = sum(same) / n
    return {"n_tokens": n, "kl_mean": kl_m, "kl_stderr": kl_s, "kl_percentiles": [pct(kl, f) for f in fr],
            "dp_mean": dp_m, "dp_stderr": dp_s, "dp_rms": math.sqrt(float(np.mean(np.square(dp)))),
            "dp_percentiles": [pct(dp, f) for f in fr], "ppl_b": math.exp(lq[0]), "ppl_base": math.exp(lb[0]),
            "ln_ppl_ratio": ratio, "ln_ppl_ratio_stderr": ratio_s, "cor_ln_ppl": cor, "same_top": st}


def compare(base_rows, rows, toks):
    ex, ll = [], []
    for j in range(len(toks)):
        ex.append(token_exact(base_rows[j], rows[j], toks[j]))
        ll.append(token16(rows[j], encode16(base_rows[j]), toks[j]))
    cols = lambda r: [list(x) for x in zip(*r)]
    return cols(ex), cols(ll)


def r8(v):
    return [float(f"{x:.9g}") for x in v]


def main():
    text = text_prefix()
    for name, s in SETS.items():
        n_ctx, n_chunks = s["n_ctx"], s["chunks"]
        base_path = os.path.join(M, s["base"])
        probe = Llama(model_path=base_path, n_ctx=n_ctx, vocab_only=True, verbose=False)
        tokens = probe.tokenize(text, add_bos=True, special=False)
        add_bos = len(probe.tokenize(b"a", add_bos=True)) > len(probe.tokenize(b"a", add_bos=False))
        bos = probe.token_bos() if add_bos else None
        del probe
        assert len(tokens) >= n_ctx * n_chunks, (name, len(tokens))
        base_rows, chunks = chunk_logits(base_path, tokens, n_ctx, n_chunks, bos)
        first = n_ctx // 2
        toks = [ch[j + 1] for ch in chunks for j in range(first, n_ctx - 1)]
        out = {"model_base": s["base"], "text": "wikitext-2-raw/wiki.test.raw", "text_bytes": len(text),
               "n_ctx": n_ctx, "n_chunks": n_chunks, "n_vocab": int(base_rows.shape[1]),
               "tokens": [int(t) for c in chunks for t in c], "pairs": {}, "native": {}}
        for qt in ("q8_0", "q4_0"):
            f32_path = os.path.join(M, f"{s['prefix']}.{qt}.f32.gguf")
            rows, _ = chunk_logits(f32_path, tokens, n_ctx, n_chunks, bos)
            ex, ll = compare(base_rows, rows, toks)
            out["pairs"][qt] = {
                "model": os.path.basename(f32_path),
                "exact": {"kl": r8(ex[0]), "dp": r8(ex[1]), "nll": r8(ex[2]), "nll_base": r8(ex[3]),
                          "same_top": [bool(x) for x in ex[4]], "stats": stats(*ex)},
                "llamacpp16": {"kl": r8(ll[0]), "stats": stats(*ll)},
            }
            nat_path = os.path.join(M, f"{s['prefix']}.{qt}.gguf")
            rows, _ = chunk_logits(nat_path, tokens, n_ctx, n_chunks, bos)
            ex, ll = compare(base_rows, rows, toks)
            out["native"][qt] = {"model": os.path.basename(nat_path), "exact": stats(*ex),
                                 "llamacpp16": stats(*ll)}
            e, l = out["pairs"][qt]["exact"]["stats"], out["pairs"][qt]["llamacpp16"]["stats"]
            print(f"{name} {qt}: KL exact {e['kl_mean']:.6g} llama.cpp-16bit {l['kl_mean']:.6g} "
                  f"native(exact) {out['native'][qt]['exact']['kl_mean']:.6g} "
                  f"max|Δkl| {max(abs(a - b) for a, b in zip(out['pairs'][qt]['exact']['kl'], out['pairs'][qt]['llamacpp16']['kl'])):.3g}")
        path = os.path.join(ROOT, "tests", "golden", f"kld_{name}.json")
        with open(path, "w") as f:
            json.dump(out, f, separators=(",", ":"))
        print("wrote", path)


if __name__ == "__main__":
    main()
