#!/usr/bin/env python3
"""Reference for AWQ's q/k/v scale search (issue 12, point 6): llm-awq's `auto_scale_block` /
`_search_module_scale` with module2inspect = self_attn, transcribed in numpy, on SmolLM2-135M-Instruct's layer 0.

llm-awq (mit-han-lab/llm-awq, awq/quantize/auto_scale.py) searches the scales of q_proj/k_proj/v_proj by
    x_max  = x.abs().view(-1, C).mean(0)                     # get_act_scale on the q_proj input
    for ratio in range(20): ratio /= 20
        scales = x_max.pow(ratio).clamp(min=1e-4); scales /= (scales.max() * scales.min()).sqrt()
        fc.weight = w_quantize_func(fc.weight * scales) / scales   for q, k, v
        out = self_attn(x)                                    # the whole attention module, o_proj unquantized
        loss = (org_out - out).float().pow(2).mean()          # first minimum kept (loss < best)
This script does exactly that on whole sequences (causal attention, RoPE, grouped KV heads: the Llama
attention of the GGUF file), with two weight grids:
  * "ctrust": the grid ctrust's AWQ uses (the GPTQ reference's find_params, fp16 scale and minimum, value
    q * d + m; docs/compression.md) -- the alpha ctrust must pick;
  * "llm-awq": llm-awq's own pseudo_quantize_tensor (min/max of the group, scale clamp 1e-5, integer zero),
    for information (ctrust keeps its shared grid, a documented deviation).
It also evaluates the objective ctrust used before (mean squared error of the q, k, v outputs themselves).

Inputs: the F32 GGUF of SmolLM2 (gguf reader), calibration sequences drawn here from wiki.valid.tokens cleaned by
this script's own transcription of the clean-up rule (sentences with <unk> dropped, @-@ @,@ @.@ undone) and
tokenized by `ctrust tokenize` (checked against llama.cpp elsewhere). Writes tests/golden/awq_smollm2_l0.json.

Usage: CTRUST_BIN=build/ctrust python3 scripts/ref/awq_ref.py [--bits 3] [--group 64] [--nseq 4] [--len 256]
"""
import argparse
import json
import os
import re
import subprocess
import sys

import numpy as np
import gguf

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("CTRUST_BIN", os.path.join(ROOT, "build", "ctrust"))
SHARED = os.environ.get("CTRUST_SHARED", os.path.join(ROOT, "..", "shared"))
CACHE = os.environ.get("CTRUST_CACHE", os.path.expanduser("~/.cache/ctrust"))
MODEL = os.path.join(CACHE, "models", "SmolLM2-135M-Instruct.F32.gguf")
TEXT = os.path.join(SHARED, "data", "wikitext-2-tokens", "wiki.valid.tokens")


def clean(text):
    out = []
    for line in text.split("\n"):
        if "<unk>" in line:
            sents = re.split(r"(?<= [.!?]) ", line)  # a sentence ends after " . ", " ! ", " ? "
            line = " ".join(s for s in sents if "<unk>" not in s)  # (rejoined with the space split off)
            if not line.strip():
                continue
        out.append(line)
    t = "\n".join(out)
    return t.replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".")


def paragraphs(text):
    ps = [l.strip() for l in text.split("\n")]
    return [p for p in ps if p and not (p.startswith("=") and p.endswith("="))]


def tokenize(text):
    r = subprocess.run([BIN, "tokenize", "-m", MODEL, "--no-bos", "--json", "-t", "1", text], check=True,
                       capture_output=True, text=True)
    return json.loads(r.stdout)["ids"]


def f16(x):
    return np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float32)


def quant_ctrust(w, bits, group):
    """ctrust's fit_grid (GPTQ find_params with 0 on the grid, fp16 scale and minimum) + grid_q/grid_value."""
    out, inn = w.shape
    g = w.reshape(-1, group).astype(np.float32)
    maxq = np.float32(2**bits - 1)
    xmin = np.minimum(g.min(axis=1), np.float32(0))
    xmax = np.maximum(g.max(axis=1), np.float32(0))
    both0 = (xmin == 0) & (xmax == 0)
    xmin = np.where(both0, np.float32(-1), xmin)
    xmax = np.where(both0, np.float32(1), xmax)
    scale = f16((xmax - xmin) / maxq)
    scale = np.where(scale == 0, np.float32(2.0**-24), scale)
    zero = np.rint(-xmin / scale).astype(np.float32)
    mn = f16(-zero * scale)
    q = np.clip(np.rint((g - mn[:, None]) / scale[:, None]), 0, maxq).astype(np.float32)
    return (q * scale[:, None] + mn[:, None]).astype(np.float32).reshape(out, inn)


def quant_llmawq(w, bits, group):
    """llm-awq pseudo_quantize_tensor(zero_point=True, q_group_size=group)."""
    out, inn = w.shape
    g = w.reshape(-1, group).astype(np.float32)
    max_int = 2**bits - 1
    mx = g.max(axis=1, keepdims=True)
    mn = g.min(axis=1, keepdims=True)
    scales = np.maximum(mx - mn, np.float32(1e-5)) / np.float32(max_int)
    zeros = np.clip(-np.rint(mn / scales), 0, max_int)
    return ((np.clip(np.rint(g / scales) + zeros, 0, max_int) - zeros) * scales).astype(np.float32).reshape(out, inn)


def rope(x, n_heads, hd, theta):  # x [len][n_heads*hd], GGUF llama layout: adjacent pairs
    n = x.shape[0]
    i = np.arange(hd // 2)
    ang = np.arange(n)[:, None] * (theta ** (-2.0 * i / hd))[None, :]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    v = x.reshape(n, n_heads, hd)
    a, b = v[..., 0::2], v[..., 1::2]
    r = np.empty_like(v)
    r[..., 0::2] = a * c - b * s
    r[..., 1::2] = a * s + b * c
    return r.reshape(n, n_heads * hd)


def self_attn(x, wq, wk, wv, wo, cfg):  # x [len][dim] (the q_proj input); float64
    nh, nkv, hd, theta = cfg["n_heads"], cfg["n_kv_heads"], cfg["head_dim"], cfg["rope_theta"]
    n = x.shape[0]
    q = rope(x @ wq.T, nh, hd, theta).reshape(n, nh, hd)
    k = rope(x @ wk.T, nkv, hd, theta).reshape(n, nkv, hd)
    v = (x @ wv.T).reshape(n, nkv, hd)
    rep = nh // nkv
    mask = np.triu(np.full((n, n), -np.inf), 1)
    att = np.empty((n, nh, hd))
    for h in range(nh):
        sc = q[:, h] @ k[:, h // rep].T / np.sqrt(hd) + mask
        sc = np.exp(sc - sc.max(axis=1, keepdims=True))
        sc /= sc.sum(axis=1, keepdims=True)
        att[:, h] = sc @ v[:, h // rep]
    return att.reshape(n, nh * hd) @ wo.T


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bits", type=int, default=3)
    ap.add_argument("--group", type=int, default=64)
    ap.add_argument("--nseq", type=int, default=4)
    ap.add_argument("--len", type=int, default=256)
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "golden", "awq_smollm2_l0.json"))
    a = ap.parse_args()

    r = gguf.GGUFReader(MODEL)
    T = {t.name: np.array(t.data, dtype=np.float32) for t in r.tensors if t.name.startswith(("blk.0.", "token_embd"))}
    fld = lambda k: r.fields[k].parts[r.fields[k].data[0]][0]
    cfg = {"n_heads": int(fld("llama.attention.head_count")), "n_kv_heads": int(fld("llama.attention.head_count_kv")),
           "rope_theta": float(fld("llama.rope.freq_base")), "eps": float(fld("llama.attention.layer_norm_rms_epsilon"))}
    dim = T["token_embd.weight"].shape[1]
    cfg["head_dim"] = dim // cfg["n_heads"]

    # Calibration sequences: nseq paragraphs drawn with a seeded generator, each followed by the next paragraphs
    # until the text has len tokens.
    paras = paragraphs(clean(open(TEXT, encoding="utf-8").read()))
    rng = np.random.default_rng(a.seed)
    seqs = []
    for p0 in rng.choice(len(paras), size=a.nseq, replace=False):
        text, k = paras[p0], 1
        while len(text) < 6 * a.len:
            text += "\n" + paras[(p0 + k) % len(paras)]
            k += 1
        ids = tokenize(text)
        assert len(ids) >= a.len
        seqs.append(ids[: a.len])

    # Layer 0's q_proj input: rmsnorm(embedding) * attn_norm.
    emb = T["token_embd.weight"]
    xs = []
    for s in seqs:
        e = emb[np.array(s)].astype(np.float32)
        xs.append((e / np.sqrt((e.astype(np.float64) ** 2).mean(axis=1, keepdims=True) + cfg["eps"])).astype(np.float32)
                  * T["blk.0.attn_norm.weight"])
    X = np.concatenate(xs)
    W = {k: T[f"blk.0.attn_{k}.weight"] for k in ("q", "k", "v", "output")}
    x_max = np.abs(X.astype(np.float64)).mean(axis=0).astype(np.float32)
    org = [self_attn(x.astype(np.float64), W["q"], W["k"], W["v"], W["output"], cfg) for x in xs]

    def scales_for(ratio):
        s = np.maximum(x_max ** np.float32(ratio), np.float32(1e-4)).astype(np.float32)
        return (s / np.sqrt(s.max() * s.min())).astype(np.float32)

    def fake(w, s, quant):
        return (quant((w * s[None, :]).astype(np.float32), a.bits, a.group) / s[None, :]).astype(np.float32)

    res = {}
    for gname, quant in (("ctrust", quant_ctrust), ("llm-awq", quant_llmawq)):
        attn_loss, qkv_loss = [], []
        for i in range(20):
            s = scales_for(i / 20)
            wq, wk, wv = (fake(W[k], s, quant) for k in ("q", "k", "v"))
            err = sum(((self_attn(x.astype(np.float64), wq, wk, wv, W["output"], cfg) - o) ** 2).sum()
                      for x, o in zip(xs, org))
            attn_loss.append(err / (len(xs) * a.len * dim))
            e2 = sum((((W[k].astype(np.float64) - w) @ X.T.astype(np.float64)) ** 2).sum()
                     for k, w in (("q", wq), ("k", wk), ("v", wv)))
            qkv_loss.append(e2 / (X.shape[0] * (W["q"].shape[0] + W["k"].shape[0] + W["v"].shape[0])))
        best = lambda l: int(np.argmin(l)) / 20  # argmin keeps the first minimum, as `loss < best_error`
        res[gname] = {"attn_loss": attn_loss, "alpha_attn": best(attn_loss), "qkv_loss": qkv_loss,
                      "alpha_qkv": best(qkv_loss)}
        srt = sorted(attn_loss)
        res[gname]["attn_margin"] = (srt[1] - srt[0]) / srt[0]
        print(f"{gname} grid: attention-output objective alpha {res[gname]['alpha_attn']:.2f} (next best "
              f"+{100 * res[gname]['attn_margin']:.2f}%), q/k/v-output objective alpha {res[gname]['alpha_qkv']:.2f}",
              file=sys.stderr)
        # Attention-output error of the alpha the q/k/v objective picks, relative to the attention objective's.
        res[gname]["attn_loss_ratio_qkv_pick"] = attn_loss[int(res[gname]["alpha_qkv"] * 20)] / min(attn_loss)
    golden = {"model": os.path.basename(MODEL), "layer": 0, "bits": a.bits, "group": a.group, "seed": a.seed,
              "seqs": seqs, **res}
    with open(a.out, "w") as f:
        json.dump(golden, f)
    print(f"wrote {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
