#!/usr/bin/env python3
"""Regenerates tests/golden/tokens_*.json: llama.cpp's tokenization (through llama-cpp-python) of tricky
strings and of the whole WikiText-2 test file, for stories260K (SentencePiece BPE), SmolLM2-135M and the
two Qwen2.5-Coder models (byte-level BPE; Qwen2's pre-tokenizer regex) and Gemma-3-270M (SentencePiece BPE with
byte fallback, 262,144 pieces, no space prefix, user-defined pieces matched in plain text). ctrust's tests compare their own ids
against these, so llama.cpp is not needed to test.

    bash scripts/setup_ref.sh; bash scripts/fetch_models.sh qwen0.5b qwen1.5b gemma3-270m
    python3 scripts/ref/make_token_golden.py [--shared ../shared] [--smollm ~/.cache/ctrust/models/...gguf]
                                             [--only stories260K,smollm2,qwen0.5b,qwen1.5b,gemma3-270m]

stories260K ships as GGUF version 1, which current llama.cpp cannot read: this script parses it itself and
writes a version-3 copy (gguf.GGUFWriter) to a temporary folder first.
"""
import argparse
import ctypes
import json
import os
import struct
import sys
import tempfile

import numpy as np

MASK64 = (1 << 64) - 1
CHUNK = 4096  # tokens per chunk hash

TRICKY = [
    b"",
    b" ",
    b"  ",
    b"   ",
    b"\n",
    b"\n\n\n",
    b"\t",
    b" \t\n ",
    b"Hello world",
    b" Hello world",
    b"Hello world ",
    b"hello   world",
    b"Hello\n\nworld\n",
    b"\t\tindented\ttabs  \t x",
    "café naïve résumé".encode(),
    "Ünïcödé àccents Ωμέγα".encode(),
    "日本語のテキスト、東京".encode(),
    "中文字符测试。".encode(),
    "한국어 텍스트".encode(),
    "emoji 😀🎉👍🏽 family 👨‍👩‍👧".encode(),
    "Привет, мир!".encode(),
    "مرحبا بالعالم".encode(),
    b"1234567890",
    b"123456789012345678901234567890",
    b"3.14159 and 1,000,000 and 2024-01-31",
    b"phone: +1 (555) 123-4567",
    "Numbers: ١٢٣ ²³ ½ Ⅻ".encode(),
    b"'s 't 're 've 'm 'll 'd",
    b"I'm, you're, he's, we'll, they've, I'd, DON'T, WON'T, She'S, 'Quote'",
    b"don't can't won't",
    b"<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    b"<|endoftext|>",
    b"<s>hello</s>",
    b"<unk> <s> </s>",
    b"a<|im_start|>b",
    b"   leading spaces",
    b"trailing spaces   ",
    "mixed \u00a0nbsp\u2003emspace\u3000ideographic \u0085nel".encode(),
    "\u180e mongolian vowel separator!\u180e \u180e\u180e".encode(),
    b"code: def f(x):\n    return x**2  # comment\n",
    b"URL https://example.com/path?q=1&r=2#frag",
    b"email a.b@c.org",
    b"!!! ??? ... ,,, ;;; --- ___",
    b"$100 + 50% = <>^~|`",
    b"\xff\xfe invalid utf8 \xc3( and \xed\xa0\x80 surrogate",
    "ZWJ\u200bzero\u200dwidth".encode(),
    "Straße ǅ ﬁ".encode(),
    b"a\r\nb\rc",
    b"\x01control\x7f\x1f",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math".encode(),
    "Unicode 15: a\U00011f04\U00011f05b \u4e2d\U00031350\U00031351 x\U0002ebf0 \U00011f50 1\U00011f51 !\U00011f43?".encode(),
    b" . , ? ! ' ' 'll ' s",
]


def fnv1a64(ids):
    h = 14695981039346656037
    for b in np.asarray(ids, dtype="<i4").tobytes():
        h ^= b
        h = (h * 1099511628211) & MASK64
    return h


def read_gguf_v1(path):
    """Minimal GGUF version-1 parser (counts and string lengths are uint32)."""
    b = open(path, "rb").read()
    if b[:4] != b"GGUF":
        raise ValueError(f"{path}: not GGUF")
    ver, n_tensors, n_kv = struct.unpack_from("<III", b, 4)
    if ver != 1:
        raise ValueError(f"{path}: version {ver}, expected 1")
    off = 16
    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?"}

    def rstr(off):
        n = struct.unpack_from("<I", b, off)[0]
        return b[off + 4:off + 4 + n], off + 4 + n

    def rval(t, off):
        if t in scalar:
            f = "<" + scalar[t]
            return struct.unpack_from(f, b, off)[0], off + struct.calcsize(f)
        if t == 8:
            return rstr(off)
        if t == 9:
            et, n = struct.unpack_from("<II", b, off)
            off += 8
            out = []
            for _ in range(n):
                v, off = rval(et, off)
                out.append(v)
            return (et, out), off
        raise ValueError(f"value type {t}")

    kv = []
    for _ in range(n_kv):
        k, off = rstr(off)
        t = struct.unpack_from("<I", b, off)[0]
        v, off = rval(t, off + 4)
        kv.append((k.decode(), t, v))
    tensors = []
    for _ in range(n_tensors):
        name, off = rstr(off)
        nd = struct.unpack_from("<I", b, off)[0]
        dims = struct.unpack_from(f"<{nd}I", b, off + 4)
        off += 4 + 4 * nd
        ttype, toff = struct.unpack_from("<IQ", b, off)
        off += 12
        tensors.append((name.decode(), dims, ttype, toff))
    data0 = (off + 31) // 32 * 32
    return kv, tensors, b, data0


def gguf_v1_to_v3(src, dst):
    import gguf
    kv, tensors, b, data0 = read_gguf_v1(src)
    arch = next(v for k, t, v in kv if k == "general.architecture").decode()
    w = gguf.GGUFWriter(dst, arch)
    for k, t, v in kv:
        if k == "general.architecture":
            continue
        if t == 8:
            w.add_string(k, v.decode())
        elif t == 4:
            w.add_uint32(k, v)
        elif t == 5:
            w.add_int32(k, v)
        elif t == 6:
            w.add_float32(k, v)
        elif t == 7:
            w.add_bool(k, v)
        elif t == 9:
            et, arr = v
            if et == 8:
                w.add_array(k, [x.decode("utf-8", "surrogateescape") for x in arr])
            elif et == 6:
                w.add_key_value(k, [float(x) for x in arr], gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.FLOAT32)
            elif et == 5:
                w.add_key_value(k, [int(x) for x in arr], gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.INT32)
            else:
                raise ValueError(f"{k}: array of type {et}")
        else:
            raise ValueError(f"{k}: type {t}")
    for name, dims, ttype, toff in tensors:
        if ttype != 0:
            raise ValueError(f"{name}: only F32 tensors expected")
        n = int(np.prod(dims))
        arr = np.frombuffer(b, dtype="<f4", count=n, offset=data0 + toff).reshape(tuple(reversed(dims)))
        w.add_tensor(name, arr.copy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def detokenize(vocab, ids, remove_special, unparse_special):
    import llama_cpp
    arr = (llama_cpp.llama_token * max(1, len(ids)))(*ids)
    size = 64 + 16 * len(ids)
    buf = ctypes.create_string_buffer(size)
    n = llama_cpp.llama_detokenize(vocab, arr, len(ids), buf, size, remove_special, unparse_special)
    if n < 0:
        raise RuntimeError("detokenize buffer too small")
    return buf.raw[:n]


def text_fields(b):
    d = {"hex": b.hex()}
    try:
        d["text"] = b.decode("utf-8")
    except UnicodeDecodeError:
        pass
    return d


def make(model_path, wiki_path, out_path, name):
    import llama_cpp
    llm = llama_cpp.Llama(model_path=model_path, vocab_only=True, verbose=False)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    cases = []
    for s in TRICKY:
        plain = llm.tokenize(s, add_bos=False, special=False)
        bos_special = llm.tokenize(s, add_bos=True, special=True)
        case = {"input": text_fields(s), "ids": plain, "ids_bos_special": bos_special,
                "decode": text_fields(detokenize(vocab, plain, False, False)),
                "detok_bos_special": text_fields(detokenize(vocab, bos_special, True, True))}
        cases.append(case)
    wiki = open(wiki_path, "rb").read()
    ids = llm.tokenize(wiki, add_bos=True, special=False)
    chunks = [fnv1a64(ids[i:i + CHUNK]) for i in range(0, len(ids), CHUNK)]
    out = {
        "model": name,
        "generator": "scripts/ref/make_token_golden.py with llama-cpp-python " + llama_cpp.__version__,
        "n_vocab": llm.n_vocab(),
        "bos": llm.token_bos(),
        "eos": llm.token_eos(),
        "cases": cases,
        "wikitext": {
            "file": "data/wikitext-2-raw/wiki.test.raw",
            "add_bos": True,
            "parse_special": False,
            "bytes": len(wiki),
            "count": len(ids),
            "fnv1a64": f"{fnv1a64(ids):016x}",
            "first": ids[:200],
            "last": ids[-200:],
            "chunk_tokens": CHUNK,
            "chunk_fnv1a64": [f"{h:016x}" for h in chunks],
        },
    }
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"{out_path}: {len(cases)} cases, wikitext {len(ids)} tokens, hash {fnv1a64(ids):016x}")


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(root, "..", "shared"))
    ap.add_argument("--smollm", default=os.path.expanduser("~/.cache/ctrust/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--out", default=os.path.join(root, "tests", "golden"))
    ap.add_argument("--only", default="stories260K,smollm2,qwen0.5b,qwen1.5b,gemma3-270m",
                    help="comma-separated subset of stories260K,smollm2,qwen0.5b,qwen1.5b,gemma3-270m")
    a = ap.parse_args()
    only = set(a.only.split(","))
    wiki = os.path.join(a.shared, "data", "wikitext-2-raw", "wiki.test.raw")
    os.makedirs(a.out, exist_ok=True)
    if "stories260K" in only:
        with tempfile.TemporaryDirectory() as tmp:
            v3 = os.path.join(tmp, "stories260K-v3.gguf")
            gguf_v1_to_v3(os.path.join(a.shared, "models", "stories260K", "stories260K-f32.gguf"), v3)
            make(v3, wiki, os.path.join(a.out, "tokens_stories260K.json"), "stories260K")
    if "smollm2" in only:
        make(a.smollm, wiki, os.path.join(a.out, "tokens_smollm2.json"), "SmolLM2-135M-Instruct")
    # The optional Qwen2.5-Coder models (scripts/fetch_models.sh): skipped with a note when not fetched.
    models = os.path.join(os.environ.get("CTRUST_CACHE", os.path.expanduser("~/.cache/ctrust")), "models")
    for key, name in (("qwen0.5b", "Qwen2.5-Coder-0.5B-Instruct"), ("qwen1.5b", "Qwen2.5-Coder-1.5B-Instruct")):
        if key not in only:
            continue
        path = os.path.join(models, f"qwen2.5-coder-{key[4:]}-instruct-q4_k_m.gguf")
        if not os.path.exists(path):
            print(f"note: {path} is missing (bash scripts/fetch_models.sh {key}); skipped", file=sys.stderr)
            continue
        make(path, wiki, os.path.join(a.out, f"tokens_{key}.json"), name)
    if "gemma3-270m" in only:
        path = os.path.join(models, "gemma-3-270m-q4_k_m.gguf")
        if not os.path.exists(path):
            print(f"note: {path} is missing (bash scripts/fetch_models.sh gemma3-270m); skipped", file=sys.stderr)
        else:
            make(path, wiki, os.path.join(a.out, "tokens_gemma3-270m.json"), "Gemma-3-270M")


if __name__ == "__main__":
    sys.exit(main())
