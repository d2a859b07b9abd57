#!/usr/bin/env python3
"""Checks GGUF files written by ctrust's writer with the independent `gguf` Python package.

  1. <scratch>/stories_all_types.gguf (written by the ctest GgufWriter.RoundTripsStoriesInEveryWritableType):
     gguf.GGUFReader opens it; every metadata key of the source (stories260K, GGUF v1, parsed here by hand
     since gguf-py cannot read v1) and the test.* keys have the right types and values; every tensor has the
     source's shape, and its bytes equal gguf-py's own quantization of the source f32 values.
  2. ~/.cache/ctrust/models/SmolLM2-135M-Instruct.F32.gguf if present (scripts/setup.sh writes it with
     ctrust): opens, same keys as the Q4_1 original, every tensor equals gguf-py's dequantization of it.

Usage: python3 scripts/ref/check_gguf_writer.py [scratch_dir]   (default: $TMPDIR/ctrust-tests)
Exit status 0 when everything matches.
"""
import os
import struct
import sys
import tempfile

import numpy as np
from gguf import GGUFReader, GGMLQuantizationType as T, GGUFValueType as V
from gguf.quants import dequantize, quantize

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
scratch = sys.argv[1] if len(sys.argv) > 1 else os.path.join(tempfile.gettempdir(), "ctrust-tests")
stories = os.path.join(root, "..", "shared", "models", "stories260K", "stories260K-f32.gguf")
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL:", msg)


def read_v1(path):
    """Minimal GGUF v1 parser: (kv dict of python values, {name: (ne, f32 array)})."""
    d = open(path, "rb").read()
    pos = 4
    ver, nt, nkv = struct.unpack_from("<III", d, pos)
    assert ver == 1
    pos += 12
    fmt = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def rs():
        nonlocal pos
        n, = struct.unpack_from("<I", d, pos)
        pos += 4
        s = d[pos:pos + n]
        pos += n
        return s.decode("utf-8")

    def rv(t):
        nonlocal pos
        if t == 8:
            return rs()
        if t == 9:
            et, n = struct.unpack_from("<II", d, pos)
            pos += 8
            return [rv(et) for _ in range(n)]
        v, = struct.unpack_from("<" + fmt[t], d, pos)
        pos += struct.calcsize(fmt[t])
        return v

    kv = {}
    for _ in range(nkv):
        k = rs()
        t, = struct.unpack_from("<I", d, pos)
        pos += 4
        kv[k] = rv(t)
    infos = []
    for _ in range(nt):
        name = rs()
        nd, = struct.unpack_from("<I", d, pos)
        pos += 4
        ne = list(struct.unpack_from("<%dI" % nd, d, pos))
        pos += 4 * nd
        typ, off = struct.unpack_from("<IQ", d, pos)
        pos += 12
        assert typ == 0
        infos.append((name, ne, off))
    start = (pos + 31) // 32 * 32
    tensors = {}
    for name, ne, off in infos:
        n = int(np.prod(ne))
        tensors[name] = (ne, np.frombuffer(d, dtype=np.float32, count=n, offset=start + off))
    return kv, tensors


def field_value(f):
    v = f.contents()
    return v


# ---- 1. stories in every writable type
path = os.path.join(scratch, "stories_all_types.gguf")
if not os.path.exists(path):
    sys.exit(f"{path} missing: run ctrust_tests --gtest_filter=GgufWriter.* first")
src_kv, src_t = read_v1(stories)
r = GGUFReader(path)
check(r.alignment == 64, f"alignment {r.alignment}")
for k, v in src_kv.items():
    f = r.fields.get(k)
    check(f is not None, f"key {k} missing")
    if f is None:
        continue
    got = field_value(f)
    if isinstance(v, float):
        check(np.float32(v) == np.float32(got), f"{k}: {got} != {v}")
    elif isinstance(v, list) and v and isinstance(v[0], float):
        check(np.array_equal(np.float32(v), np.float32(got)), f"{k}: array differs")
    else:
        check(got == v, f"{k}: {str(got)[:60]} != {str(v)[:60]}")
expect = {"test.u8": (V.UINT8, 250), "test.i8": (V.INT8, -128), "test.u16": (V.UINT16, 65535),
          "test.i16": (V.INT16, -30000), "test.u64": (V.UINT64, 0xfedcba9876543210),
          "test.i64": (V.INT64, -2**63 + 1), "test.f64": (V.FLOAT64, 3.141592653589793),
          "test.bool": (V.BOOL, True), "test.empty_str": (V.STRING, ""),
          "test.i32s": (V.ARRAY, [1, -2, 3]), "test.empty_arr": (V.ARRAY, [])}
for k, (t, v) in expect.items():
    f = r.fields.get(k)
    check(f is not None and f.types[0] == t and field_value(f) == v, f"{k}: {f and field_value(f)} != {v}")
check(np.float32(field_value(r.fields["test.f32"])) == np.float32(-0.1), "test.f32")
check(r.fields["test.utf8"].contents().encode("utf-8") == "h\u00e9llo \u2581 \0x".encode("utf-8"), "test.utf8")
check(r.fields["test.nested"].types[:2] == [V.ARRAY, V.ARRAY], "test.nested types")
check(len(r.tensors) == len(src_t), "tensor count")
types = set()
for t in r.tensors:
    ne, x = src_t[t.name]
    check([int(n) for n in t.shape] == ne, f"{t.name}: shape {t.shape} != {ne}")
    qt = T(t.tensor_type)
    types.add(qt.name)
    want = x.tobytes() if qt == T.F32 else quantize(x.reshape(-1, ne[0]), qt).tobytes()
    got = np.asarray(t.data).tobytes()
    check(got == want, f"{t.name} ({qt.name}): bytes differ from gguf-py's quantization")
check(types == {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1"}, f"types {types}")
print(f"{path}: {len(r.fields)} fields, {len(r.tensors)} tensors in {sorted(types)} checked")

# ---- 2. SmolLM2 F32 copy from scripts/setup.sh, if present
cache = os.path.expanduser("~/.cache/ctrust/models")
f32p, q41p = os.path.join(cache, "SmolLM2-135M-Instruct.F32.gguf"), os.path.join(cache, "SmolLM2-135M-Instruct.Q4_1.gguf")
if os.path.exists(f32p) and os.path.exists(q41p):
    a, b = GGUFReader(q41p), GGUFReader(f32p)
    ka = {k for k in a.fields if not k.startswith("GGUF.")}
    kb = {k for k in b.fields if not k.startswith("GGUF.")}
    check(ka <= kb, f"F32 copy lacks keys {ka - kb}")
    bt = {t.name: t for t in b.tensors}
    for t in a.tensors:
        u = bt.get(t.name)
        check(u is not None and T(u.tensor_type) == T.F32, f"{t.name} missing or not F32")
        if u is not None:
            want = dequantize(np.asarray(t.data), T(t.tensor_type)).reshape(-1)
            check(np.array_equal(np.asarray(u.data).reshape(-1).view(np.uint32), want.view(np.uint32)),
                  f"{t.name}: F32 copy differs from gguf-py's dequantization")
    print(f"{f32p}: {len(b.tensors)} tensors checked")
else:
    print(f"{f32p}: not present, skipped")

print("OK" if not failures else f"{len(failures)} FAILURES")
sys.exit(1 if failures else 0)
