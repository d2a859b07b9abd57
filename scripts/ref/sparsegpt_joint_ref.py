#!/usr/bin/env python3
"""Reference for SparseGPT's joint sparsity + quantization (issue 12, point 3): the reference code's
`SparseGPT.fasterprune` with a quantizer attached (IST-DASLab/sparsegpt, sparsegpt.py + quant.py, as `opt.py
--prunen 2 --prunem 4 --wbits 4` runs it), transcribed in numpy, on SmolLM2-135M-Instruct's layer-0 attn_q.

The reference sweep, per block of 128 columns and per column i (N:M: the mask of the M columns starting at i is
chosen when i % M == 0 by the smallest w^2 / Hinv_ii^2 of the *current* weights):
    q = w.clone(); q[mask[:, i]] = 0
    q = quantize(q, scale, zero, maxq)          # the per-channel grid of quant.py, found once on the original W
    err = (w - q) / Hinv[i, i];  W1[:, i:] -= err * Hinv[i, i:];  ...  W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
so the mask and the quantization are decided in the same column sweep and the error of the pruned *and*
quantized column is what OBS compensates. Grid (quant.py Quantizer, perchannel=True, sym=False, mse=False):
xmin = min(min w, 0), xmax = max(max w, 0) per row, [-1, 1] for an all-zero row, scale = (xmax - xmin) / maxq,
zero = round(-xmin / scale), q = clamp(round(x / scale) + zero, 0, maxq), value scale * (q - zero); a pruned
weight is quantize(0) = 0 exactly.

Precision: the sweep is float64 (as ctrust's; the reference runs torch float32), the grid arithmetic float32 (as
both). Inputs: the calibration sequences of tests/golden/awq_smollm2_l0.json (4 x 256 tokens of the cleaned
wiki.valid.tokens, tokenized by ctrust), layer 0's attn_q input rmsnorm(embedding) * attn_norm, H = 2 X^T X / n,
dampening 0.01, block 128, 4 bits, 2:4. Rows: every 6th row of attn_q (96 rows; with N:M and a per-channel grid
the rows are independent, so a row subset is the same computation as the full layer for those rows).

Writes tests/golden/sparsegpt_joint_smollm2_l0.json: the rows, each row's scale and zero, the kept mask (hex, one
bit per weight, row-major, LSB first) and the levels q (hex, one nibble per weight), and the layer output error.
Usage: python3 scripts/ref/sparsegpt_joint_ref.py   (needs numpy, gguf==0.19.0; SmolLM2 Q4_1 in ~/.cache/ctrust/models)
"""
import json
import os
import sys

import numpy as np
import gguf

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.environ.get("CTRUST_CACHE", os.path.expanduser("~/.cache/ctrust"))
# The Q4_1 file (the only SmolLM2 download): its tensors dequantized by gguf-py are the values ctrust loads (and
# what its F32 copy holds).
MODEL = os.path.join(CACHE, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
f32 = np.float32


def find_params(W, bits):
    """quant.py Quantizer.find_params(W, weight=True), perchannel, asymmetric, in float32."""
    maxq = f32(2 ** bits - 1)
    xmin = np.minimum(W.min(axis=1), f32(0)).astype(f32)
    xmax = np.maximum(W.max(axis=1), f32(0)).astype(f32)
    both0 = (xmin == 0) & (xmax == 0)
    xmin[both0] = f32(-1)
    xmax[both0] = f32(1)
    scale = ((xmax - xmin) / maxq).astype(f32)
    zero = np.round(-xmin / scale).astype(f32)
    return scale, zero, maxq


def quantize(x, scale, zero, maxq):
    """quant.py quantize(): float32; np.round is half-to-even like torch.round. Returns (value, level)."""
    q = np.clip(np.round(x.astype(f32) / scale) + zero, f32(0), maxq).astype(f32)
    return (scale * (q - zero)).astype(f32), q


def fasterprune(W, H, prunen, prunem, bits, blocksize=128, percdamp=0.01):
    """sparsegpt.py SparseGPT.fasterprune with self.quantizer (N:M path). W [rows][cols] float32."""
    rows, cols = W.shape
    scale, zero, maxq = find_params(W, bits)  # before the dead columns are zeroed, as the reference
    scale, zero = scale[:, None], zero[:, None]
    W = W.astype(np.float64).copy()
    H = H.copy()
    dead = np.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    damp = percdamp * np.mean(np.diag(H))
    H[np.arange(cols), np.arange(cols)] += damp
    L = np.linalg.cholesky(H)
    Linv = np.linalg.inv(L)
    Hinv = np.linalg.cholesky(Linv.T @ Linv).T  # cholesky_inverse, then the upper Cholesky factor
    Q = np.zeros_like(W)
    levels = np.zeros(W.shape, dtype=np.int64)
    keep = np.ones(W.shape, dtype=bool)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        W1 = W[:, i1:i2].copy()
        Err1 = np.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        mask1 = np.zeros(W1.shape, dtype=bool)
        for i in range(i2 - i1):
            w = W1[:, i]
            d = Hinv1[i, i]
            if i % prunem == 0:
                tmp = W1[:, i:i + prunem] ** 2 / np.diag(Hinv1)[i:i + prunem][None, :] ** 2
                idx = np.argsort(tmp, axis=1, kind="stable")[:, :prunen]  # topk(prunen, largest=False)
                np.put_along_axis(mask1[:, i:i + prunem], idx, True, axis=1)
            q = w.copy()
            q[mask1[:, i]] = 0
            qv, ql = quantize(q[:, None], scale, zero, maxq)
            q = qv[:, 0].astype(np.float64)
            Q[:, i1 + i] = q
            levels[:, i1 + i] = ql[:, 0].astype(np.int64)
            err1 = (w - q) / d
            W1[:, i:] -= np.outer(err1, Hinv1[i, i:])
            Err1[:, i] = err1
        keep[:, i1:i2] = ~mask1
        W[:, i1:i2] = Q[:, i1:i2]
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    return Q, levels, keep, scale[:, 0], zero[:, 0]


def main():
    golden_awq = json.load(open(os.path.join(ROOT, "tests", "golden", "awq_smollm2_l0.json")))
    seqs = golden_awq["seqs"]
    r = gguf.GGUFReader(MODEL)
    T = {}
    for t in r.tensors:
        if t.name.startswith(("blk.0.", "token_embd")):
            v = gguf.quants.dequantize(t.data, t.tensor_type).astype(f32)
            T[t.name] = v.reshape([int(x) for x in reversed(t.shape)]) if v.ndim > 1 or len(t.shape) > 1 else v
    fld = lambda k: r.fields[k].parts[r.fields[k].data[0]][0]
    eps = float(fld("llama.attention.layer_norm_rms_epsilon"))
    emb = T["token_embd.weight"]
    xs = []
    for s in seqs:
        e = emb[np.array(s)].astype(f32)
        xs.append((e / np.sqrt((e.astype(np.float64) ** 2).mean(axis=1, keepdims=True) + eps)).astype(f32)
                  * T["blk.0.attn_norm.weight"])
    X = np.concatenate(xs).astype(np.float64)
    H = 2.0 * X.T @ X / X.shape[0]
    Wfull = T["blk.0.attn_q.weight"]
    rows = list(range(0, Wfull.shape[0], 6))
    W = Wfull[rows]
    bits, n, m = 4, 2, 4
    Q, levels, keep, scale, zero = fasterprune(W, H, m - n, m, bits)
    D = W.astype(np.float64) - Q
    err = float(np.einsum("ij,jk,ik->", D, H, D) * X.shape[0] / 2)
    ref = float(np.einsum("ij,jk,ik->", W.astype(np.float64), H, W.astype(np.float64)) * X.shape[0] / 2)
    bitsmask = np.packbits(keep.reshape(-1), bitorder="little")
    nib = levels.reshape(-1).astype(np.uint8)
    out = {
        "generator": "scripts/ref/sparsegpt_joint_ref.py (numpy transcription of sparsegpt.py fasterprune + quant.py)",
        "model": "SmolLM2-135M-Instruct.Q4_1.gguf (dequantized)", "tensor": "blk.0.attn_q.weight", "rows": rows,
        "cols": int(W.shape[1]), "bits": bits, "prune_n": n, "prune_m": m, "damp": 0.01, "block": 128,
        "seqs_from": "awq_smollm2_l0.json", "n_tokens": int(X.shape[0]),
        "scale": [float(x) for x in scale], "zero": [float(x) for x in zero],
        "keep_hex": bitsmask.tobytes().hex(),
        "levels_hex": "".join("%x" % v for v in nib),
        "error": err, "rel_error": err / ref, "sparsity": float(1 - keep.mean()),
    }
    path = os.path.join(ROOT, "tests", "golden", "sparsegpt_joint_smollm2_l0.json")
    with open(path, "w") as f:
        json.dump(out, f)
    print(f"wrote {path}: {len(rows)} rows, rel. layer error {err / ref:.6g}, sparsity {out['sparsity']:.4f}")


if __name__ == "__main__":
    sys.exit(main())
