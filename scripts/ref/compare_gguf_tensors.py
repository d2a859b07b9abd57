#!/usr/bin/env python3
"""Compares the tensors of two GGUF files with the gguf package (an implementation independent of ctrust):
how many tensors are byte-identical (same type, same bytes), the total squared difference of their
dequantized values and its ratio to the reference's total square (relative error: sqrt of that ratio), over the
tensors whose names match --match (default the Linears of the blocks).

Used in docs/compression_results.md / docs/compression.md, e.g. for `--grid minmax`:
  python3 scripts/ref/compare_gguf_tensors.py $C/SmolLM2-135M-Instruct.Q4_1.gguf rtn4mm.gguf
Usage: compare_gguf_tensors.py REFERENCE.gguf OTHER.gguf [--match REGEX]   (needs numpy and gguf)
"""
import argparse
import re

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("reference")
    ap.add_argument("other")
    ap.add_argument("--match", default=r"^blk\.\d+\.(attn_(q|k|v|output)|ffn_(gate|up|down))\.weight$")
    a = ap.parse_args()
    ref = {t.name: t for t in GGUFReader(a.reference).tensors}
    same = differ = 0
    sq = 0.0
    ref_sq = 0.0
    for t in GGUFReader(a.other).tensors:
        if not re.search(a.match, t.name):
            continue
        r = ref[t.name]
        if r.tensor_type == t.tensor_type and r.data.tobytes() == t.data.tobytes():
            same += 1
        else:
            differ += 1
        x = dequantize(r.data, r.tensor_type).astype(np.float64).reshape(-1)
        y = dequantize(t.data, t.tensor_type).astype(np.float64).reshape(-1)
        sq += float(((x - y) ** 2).sum())
        ref_sq += float((x ** 2).sum())
    print(f"{same + differ} tensors: {same} byte-identical, {differ} differ; "
          f"total squared difference of the dequantized values {sq:.3f}; "
          f"relative error {np.sqrt(sq / ref_sq) if ref_sq > 0 else 0.0:.3g}")


if __name__ == "__main__":
    main()
