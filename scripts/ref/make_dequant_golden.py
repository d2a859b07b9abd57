#!/usr/bin/env python3
"""Regenerates tests/golden/dequant_golden.{json,bin}: reference outputs of the `gguf` Python package
(gguf.quants.dequantize / quantize, an implementation independent of ctrust) for test_quant.cpp.

  (a) "real": rows of real tensors of SmolLM2-135M-Instruct.Q4_1.gguf (Q8_0, Q4_1, F32). Only the expected
      f32 values are stored; the test reads the source bytes from the model file at `src_offset`.
  (b) "synthetic": random-but-valid blocks (finite f16 scales) of every type ctrust dequantizes, source
      bytes and expected values both stored.
  (c) "quantize": real float rows (SmolLM2 norms, dequantized SmolLM2 weights, edge cases) quantized to
      Q8_0/Q4_0/Q4_1/F16/BF16; input floats and expected bytes stored.

Usage: python3 scripts/ref/make_dequant_golden.py [path/to/SmolLM2-135M-Instruct.Q4_1.gguf]
Needs: pip install gguf numpy
"""
import importlib.metadata
import json
import os
import sys

import numpy as np
from gguf import GGUFReader, GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
model = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser(
    "~/.cache/ctrust/models/SmolLM2-135M-Instruct.Q4_1.gguf")
out_json = os.path.join(root, "tests/golden/dequant_golden.json")
out_bin = os.path.join(root, "tests/golden/dequant_golden.bin")

blob = bytearray()


def put(data: bytes) -> int:
    off = len(blob)
    blob.extend(data)
    while len(blob) % 4:
        blob.append(0)
    return off


cases = []
reader = GGUFReader(model)
tensors = {t.name: t for t in reader.tensors}

# (a) real rows
real_rows = [("token_embd.weight", [0, 1, 12345, 49151]),
             ("blk.0.attn_q.weight", [0, 575]),
             ("blk.15.ffn_down.weight", [100]),
             ("blk.29.attn_v.weight", [191]),
             ("output_norm.weight", [0])]
for name, rows in real_rows:
    t = tensors[name]
    qt = T(t.tensor_type)
    block, tsize = GGML_QUANT_SIZES[qt]
    ne0 = int(t.shape[0])
    row_bytes = ne0 // block * tsize
    raw = np.asarray(t.data).reshape(-1).view(np.uint8).reshape(-1, row_bytes)
    for r in rows:
        src = raw[r]
        exp = dequantize(src, qt).astype(np.float32).reshape(-1)
        assert exp.size == ne0
        cases.append({"kind": "real", "tensor": name, "row": r, "type": qt.name.lower(), "n": ne0,
                      "src_offset": int(t.data_offset) + r * row_bytes, "src_bytes": row_bytes,
                      "expect_offset": put(exp.tobytes())})
cases_real_file_size = os.path.getsize(model)

# (b) synthetic blocks
rng = np.random.default_rng(20240607)


def f16_bytes(n, scale):
    v = (rng.standard_normal(n) * scale).astype(np.float16)
    assert np.all(np.isfinite(v))
    return v.view(np.uint8).reshape(n, 2)


def synth(qt, nblocks):
    block, tsize = GGML_QUANT_SIZES[qt]
    b = rng.integers(0, 256, size=(nblocks, tsize), dtype=np.uint8)
    # finite f16 scale fields, at the offsets of each block layout
    if qt in (T.Q4_0, T.Q5_0, T.Q8_0):
        b[:, 0:2] = f16_bytes(nblocks, 0.05)
    elif qt in (T.Q4_1, T.Q5_1):
        b[:, 0:2] = f16_bytes(nblocks, 0.05)
        b[:, 2:4] = f16_bytes(nblocks, 0.5)
    elif qt == T.Q2_K:
        b[:, 80:82] = f16_bytes(nblocks, 0.05)
        b[:, 82:84] = f16_bytes(nblocks, 0.05)
    elif qt == T.Q3_K:
        b[:, 108:110] = f16_bytes(nblocks, 0.05)
    elif qt in (T.Q4_K, T.Q5_K):
        b[:, 0:2] = f16_bytes(nblocks, 0.05)
        b[:, 2:4] = f16_bytes(nblocks, 0.05)
    elif qt == T.Q6_K:
        b[:, 208:210] = f16_bytes(nblocks, 0.05)
    elif qt == T.F16:
        v = rng.integers(0, 65536, size=nblocks, dtype=np.uint16)
        v[(v & 0x7c00) == 0x7c00] &= 0xfbff  # no inf/NaN from random bits...
        v[:8] = [0x0000, 0x8000, 0x0001, 0x83ff, 0x7bff, 0xfbff, 0x7c00, 0x3c00]  # ...but these specials
        b = v.view(np.uint8).reshape(nblocks, 2)
    elif qt == T.BF16:
        v = rng.integers(0, 65536, size=nblocks, dtype=np.uint16)
        v[(v & 0x7f80) == 0x7f80] &= 0xff7f  # no inf/NaN
        v[:6] = [0x0000, 0x8000, 0x0001, 0x7f7f, 0xff80, 0x3f80]
        b = v.view(np.uint8).reshape(nblocks, 2)
    return np.ascontiguousarray(b)


for qt, nblocks in [(T.F16, 256), (T.BF16, 256), (T.Q4_0, 8), (T.Q4_1, 8), (T.Q5_0, 8), (T.Q5_1, 8),
                    (T.Q8_0, 8), (T.Q2_K, 4), (T.Q3_K, 4), (T.Q4_K, 4), (T.Q5_K, 4), (T.Q6_K, 4)]:
    block, _ = GGML_QUANT_SIZES[qt]
    src = synth(qt, nblocks)
    exp = dequantize(src.reshape(-1), qt).astype(np.float32).reshape(-1)
    assert exp.size == nblocks * block
    cases.append({"kind": "synthetic", "type": qt.name.lower(), "n": int(exp.size),
                  "src_offset": put(src.tobytes()), "src_bytes": int(src.size),
                  "expect_offset": put(exp.tobytes())})

# (c) quantize real float rows
inputs = []
inputs.append(np.asarray(tensors["output_norm.weight"].data, dtype=np.float32).reshape(-1))       # 576
inputs.append(np.asarray(tensors["blk.3.attn_norm.weight"].data, dtype=np.float32).reshape(-1))   # 576
for name, row in [("blk.2.ffn_gate.weight", 7), ("token_embd.weight", 400)]:
    t = tensors[name]
    qt = T(t.tensor_type)
    block, tsize = GGML_QUANT_SIZES[qt]
    row_bytes = int(t.shape[0]) // block * tsize
    raw = np.asarray(t.data).reshape(-1).view(np.uint8).reshape(-1, row_bytes)
    inputs.append(dequantize(raw[row], qt).astype(np.float32).reshape(-1))
edge = np.zeros(128, dtype=np.float32)                          # block 0: all zero
edge[32:64] = np.arange(32, dtype=np.float32) - 16.0            # block 1: exact ties after scaling
edge[64:96] = -np.linspace(0.0, 3.0, 32, dtype=np.float32)      # block 2: negative extreme
edge[96:128] = rng.standard_normal(32).astype(np.float32) * 1e-6  # block 3: tiny values (f16 subnormal scales)
inputs.append(edge)
x = np.concatenate(inputs).astype(np.float32)
assert x.size % 32 == 0
in_off = put(x.tobytes())
for qt in [T.Q8_0, T.Q4_0, T.Q4_1, T.F16, T.BF16]:
    q = quantize(x.reshape(1, -1), qt).reshape(-1).view(np.uint8)
    cases.append({"kind": "quantize", "type": qt.name.lower(), "n": int(x.size), "input_offset": in_off,
                  "expect_offset": put(q.tobytes()), "expect_bytes": int(q.size)})

with open(out_bin, "wb") as f:
    f.write(blob)
with open(out_json, "w") as f:
    json.dump({"generator": "scripts/ref/make_dequant_golden.py", "reference": "gguf-py (pip gguf " + importlib.metadata.version("gguf") + ")",
               "model": "SmolLM2-135M-Instruct.Q4_1.gguf", "model_bytes": cases_real_file_size,
               "bin": "dequant_golden.bin", "cases": cases}, f, indent=1)
print(f"{len(cases)} cases, {len(blob)} bytes -> {out_bin}")
