#!/usr/bin/env python3
"""Regenerates tests/golden/logits_*.json: reference log-probabilities and perplexities from llama.cpp
(llama-cpp-python), so ctrust's engine can be checked against an independent implementation without
llama.cpp installed at test time.

llama.cpp is made to do the same arithmetic as ctrust: F32 weights (SmolLM2's Q4_1 file dequantized with the
gguf package; ctrust dequantizes the same Q4_1 file at load, so the weights are identical), F32 KV cache
(type_k = type_v = GGML_TYPE_F32 = 0), no flash attention, logits for every position, 2 threads.

Models:
  SmolLM2-135M-Instruct: $CTRUST_CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf; its F32 copy
    SmolLM2-135M-Instruct.F32.gguf beside it is written here if missing.
  stories260K: ../shared/models/stories260K/stories260K-f32.gguf is GGUF v1, which llama.cpp no longer reads;
    a v3 copy (same metadata and tensors) is written to $CTRUST_CACHE/models/stories260K-f32.v3.gguf.

Per model the golden file holds, for two texts (English prose ~100 tokens, code + unicode ~60 tokens):
the token ids, and per position the log-softmax of the 10 largest logits (ids and values), the log-prob of
the next token and the logsumexp of the logits. Also llama.cpp's perplexity protocol (tools/perplexity:
tokenize the whole of wiki.test.raw with BOS if the vocabulary adds one, chunks of 512 tokens, the chunk's
first token replaced by BOS if so, only the second half of each chunk scored) over the first 8 chunks:
the tokens of those chunks, each chunk's mean NLL, PPL and its stderr as llama.cpp prints them.
For SmolLM2 the same per-position values from llama.cpp on the Q4_1 file itself are stored as well
(llama.cpp rounds activations to 8 bits there; ctrust does not, so these are only reported, not asserted).

Qwen2.5-Coder-0.5B/1.5B-Instruct (optional, bash scripts/fetch_models.sh qwen0.5b qwen1.5b): the Q4_K_M file's
F32 copy qwen2.5-coder-*-instruct.F32.gguf is written beside it with `ctrust convert --type f32` (build/ctrust,
or $CTRUST_BIN) and then checked tensor by tensor against the gguf package's own dequantization of the Q4_K_M
file (bit-identical, else the script stops), so llama.cpp runs on independently confirmed weights. Stored as
logits_qwen0.5b.json / logits_qwen1.5b.json, with llama.cpp's values on the Q4_K_M file ("q4_k_m_positions",
8-bit activations, reported only) and 4 (0.5B) or 2 (1.5B) perplexity chunks.

Gemma-3-270M base (optional, bash scripts/fetch_models.sh gemma3-270m): as Qwen, the Q4_K_M file's F32 copy
gemma-3-270m.F32.gguf (ctrust convert, checked against the gguf package), stored as logits_gemma3-270m.json with a
third text of 700 tokens of wiki.test.raw ("wiki_long", beyond the 512-token sliding window of 15 of its 18
layers; llama.cpp runs it with n_ctx 1024), "q4_k_m_positions", and 4 perplexity chunks.

Usage: python3 scripts/ref/make_logits_golden.py [--only smollm2|stories260k|qwen0.5b|qwen1.5b|gemma3-270m]
"""
import argparse
import json
import math
import os
import struct
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.environ.get("CTRUST_CACHE", os.path.expanduser("~/.cache/ctrust"))
SHARED = os.environ.get("CTRUST_SHARED", os.path.join(ROOT, "..", "shared"))
GOLDEN = os.path.join(ROOT, "tests", "golden")

TEXT_EN = (
    "The old lighthouse keeper climbed the narrow stairs every evening, carrying a lantern and a small "
    "notebook. He wrote down the color of the sky, the direction of the wind, and the names of the ships "
    "that passed the rocky point. Over forty years, the notebooks filled three shelves in his kitchen. "
    "When the town finally installed an automatic light, he kept climbing the stairs anyway. His daughter "
    "still keeps the last notebook; its final page is blank except for a single word: calm."
)
TEXT_CODE = (
    "def naïve_mean(xs: list[float]) -> float:\n"
    "    # Durchschnitt — 平均值 ≈ Σx/n 🙂\n"
    "    return sum(xs) / len(xs) if xs else float(\"nan\")\n"
)
PPL_CTX = 512
PPL_CHUNKS = 8


# ---------------------------------------------------------------------------------------------- model copies
def write_f32_copy(src, dst):
    """Every tensor of src dequantized to F32 with the gguf package; metadata copied (file_type -> 0)."""
    import gguf

    r = gguf.GGUFReader(src)
    arch = r.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(dst + ".part", arch)
    for key, f in r.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        val = f.contents()
        if key == "general.file_type":
            val = 0  # ALL_F32
        vtype = f.types[0]
        sub = f.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(key, val, vtype, sub_type=sub)
    for t in r.tensors:
        data = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        shape = [int(x) for x in reversed(t.shape.tolist())]
        w.add_tensor(t.name, data.reshape(shape), raw_dtype=gguf.GGMLQuantizationType.F32)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(dst + ".part", dst)


def read_gguf_v1(path):
    """Minimal reader of GGUF version 1 (uint32 counts and string lengths): (kv list, tensors)."""
    b = open(path, "rb").read()
    o = 0

    def take(fmt):
        nonlocal o
        v = struct.unpack_from("<" + fmt, b, o)
        o += struct.calcsize("<" + fmt)
        return v[0]

    def string():
        nonlocal o
        n = take("I")
        s = b[o:o + n].decode("utf-8")
        o += n
        return s

    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?"}

    def value(t):
        if t in scalar:
            return take(scalar[t])
        if t == 8:
            return string()
        if t == 9:
            et = take("I")
            n = take("I")
            return (et, [value(et) for _ in range(n)])
        raise ValueError(f"{path}: unknown GGUF v1 value type {t}")

    assert b[:4] == b"GGUF", path
    o = 4
    version = take("I")
    assert version == 1, f"{path}: version {version}, expected 1"
    n_tensors, n_kv = take("I"), take("I")
    kv = []
    for _ in range(n_kv):
        k = string()
        t = take("I")
        kv.append((k, t, value(t)))
    infos = []
    for _ in range(n_tensors):
        name = string()
        nd = take("I")
        ne = [take("I") for _ in range(nd)]
        typ = take("I")
        off = take("Q")
        infos.append((name, ne, typ, off))
    align = dict((k, v) for k, _, v in kv).get("general.alignment", 32)
    data0 = (o + align - 1) // align * align
    tensors = []
    for name, ne, typ, off in infos:
        assert typ == 0, f"{name}: only F32 expected"
        n = int(np.prod(ne))
        arr = np.frombuffer(b, dtype=np.float32, count=n, offset=data0 + off)
        tensors.append((name, arr.reshape(list(reversed(ne)))))
    return kv, tensors


def write_v3_copy(src_v1, dst):
    import gguf

    kv, tensors = read_gguf_v1(src_v1)
    arch = dict((k, v) for k, _, v in kv)["general.architecture"]
    w = gguf.GGUFWriter(dst + ".part", arch)
    for k, t, v in kv:
        if k == "general.architecture":
            continue
        if t == 9:
            et, items = v
            w.add_key_value(k, items, gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType(et))
        else:
            w.add_key_value(k, v, gguf.GGUFValueType(t))
    for name, arr in tensors:
        w.add_tensor(name, arr, raw_dtype=gguf.GGMLQuantizationType.F32)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(dst + ".part", dst)


# ------------------------------------------------------------------------------------------------ llama.cpp
def open_llama(path, n_ctx=PPL_CTX):
    import llama_cpp

    return llama_cpp.Llama(model_path=path, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, n_threads=2,
                           n_threads_batch=2, logits_all=True, type_k=0, type_v=0, flash_attn=False,
                           verbose=False)


def all_logits(llm, tokens):
    llm.reset()
    llm.eval(tokens)
    return np.array(llm.scores[:len(tokens)], dtype=np.float32)


def position_stats(logits, tokens):
    """Per position: top-10 [id, log-prob], log-prob of the next token (None at the end), logsumexp."""
    out = []
    for i, row in enumerate(logits):
        r64 = row.astype(np.float64)
        mx = r64.max()
        lse = mx + math.log(np.exp(r64 - mx).sum())
        top = np.argsort(-row, kind="stable")[:10]
        out.append({
            "top": [[int(t), round(float(r64[t] - lse), 6)] for t in top],
            "next": round(float(r64[tokens[i + 1]] - lse), 6) if i + 1 < len(tokens) else None,
            "lse": round(float(lse), 6),
        })
    return out


def llamacpp_perplexity(llm, tokens, add_bos, bos):
    """tools/perplexity/perplexity.cpp, perplexity() with ppl_stride 0, over the first PPL_CHUNKS chunks."""
    n_ctx, first = PPL_CTX, PPL_CTX // 2
    n_chunk = min(PPL_CHUNKS, len(tokens) // n_ctx)
    nll = nll2 = 0.0
    count = 0
    chunk_nll = []
    for i in range(n_chunk):
        chunk = list(tokens[i * n_ctx:(i + 1) * n_ctx])
        if add_bos:
            chunk[0] = bos
        logits = all_logits(llm, chunk)
        c = 0.0
        for j in range(first, n_ctx - 1):
            row = logits[j]
            mx = row.max()
            sum_exp = float(np.exp(row - mx, dtype=np.float32).astype(np.float64).sum())
            lp = float(row[chunk[j + 1]]) - float(mx) - math.log(sum_exp)
            nll -= lp
            nll2 += lp * lp
            c -= lp
        count += n_ctx - first - 1
        chunk_nll.append(c / (n_ctx - first - 1))
        print(f"  ppl chunk {i + 1}/{n_chunk}: {math.exp(nll / count):.4f}", file=sys.stderr)
    nll /= count
    nll2 /= count
    ppl = math.exp(nll)
    nll2 -= nll * nll
    err = math.sqrt(nll2 / (count - 1)) * ppl if nll2 > 0 else 0.0
    return {"ctx": n_ctx, "chunks": n_chunk, "n_scored": count, "ppl": ppl, "ppl_stderr": err,
            "chunk_nll": chunk_nll, "tokens": [int(t) for t in tokens[:n_chunk * n_ctx]],
            "n_text_tokens": len(tokens)}


def verify_f32_copy(src, f32):
    """Every tensor of the F32 copy equals the gguf package's dequantization of src, bit for bit."""
    import gguf

    a, b = gguf.GGUFReader(src), gguf.GGUFReader(f32)
    tb = {t.name: t for t in b.tensors}
    if len(tb) != len(a.tensors):
        sys.exit(f"{f32}: {len(tb)} tensors, {src} has {len(a.tensors)}")
    for t in a.tensors:
        u = tb[t.name]
        if u.tensor_type != gguf.GGMLQuantizationType.F32 or list(u.shape) != list(t.shape):
            sys.exit(f"{f32}: {t.name} is {u.tensor_type.name} {list(u.shape)}, expected F32 {list(t.shape)}")
        want = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)
        got = np.asarray(u.data, dtype=np.float32).reshape(-1)
        if not np.array_equal(want.view(np.uint32), got.view(np.uint32)):
            bad = int((want != got).sum())
            sys.exit(f"{f32}: {t.name} ({t.tensor_type.name}) differs from the gguf package's dequantization in "
                     f"{bad} of {want.size} values (max |diff| {float(np.abs(want - got).max()):.3g})")
    print(f"  {f32}: {len(a.tensors)} tensors equal the gguf package's dequantization of {os.path.basename(src)}",
          file=sys.stderr)


def ctrust_f32_copy(src, dst):
    exe = os.environ.get("CTRUST_BIN", os.path.join(ROOT, "build", "ctrust"))
    print(f"writing {dst} with {exe} convert --type f32", file=sys.stderr)
    subprocess.run([exe, "convert", "-m", src, "-o", dst + ".part", "--type", "f32"], check=True,
                   stdout=subprocess.DEVNULL)
    os.replace(dst + ".part", dst)


def golden_for(name, ref_path, extra_paths, out_path, long_tokens=0):
    import llama_cpp

    print(f"{name}: llama.cpp {llama_cpp.__version__} on {ref_path}", file=sys.stderr)
    n_ctx = PPL_CTX if long_tokens <= PPL_CTX else 2 * PPL_CTX
    llm = open_llama(ref_path, n_ctx)
    texts = {}
    inputs = [("english", TEXT_EN), ("code_unicode", TEXT_CODE)]
    if long_tokens:  # the first long_tokens tokens of wiki.test.raw (past a sliding window)
        wiki_text = open(os.path.join(SHARED, "data", "wikitext-2-raw", "wiki.test.raw"), "rb").read()
        ids = llm.tokenize(wiki_text[:20000], add_bos=True, special=False)[:long_tokens]
        inputs.append(("wiki_long", llm.detokenize(ids[1:]).decode("utf-8")))
    for key, text in inputs:
        toks = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
        t0 = time.time()
        texts[key] = {"text": text, "tokens": toks, "positions": position_stats(all_logits(llm, toks), toks)}
        print(f"  {key}: {len(toks)} tokens ({time.time() - t0:.1f} s)", file=sys.stderr)
    wiki = open(os.path.join(SHARED, "data", "wikitext-2-raw", "wiki.test.raw"), "rb").read()
    wiki_tokens = llm.tokenize(wiki, add_bos=True, special=False)
    add_bos = bool(llm._model.add_bos_token()) if hasattr(llm._model, "add_bos_token") else True
    bos = llm.token_bos()
    ppl = llamacpp_perplexity(llm, wiki_tokens, add_bos, bos)
    ppl["add_bos"] = add_bos
    print(f"  wiki.test.raw PPL ({ppl['chunks']} chunks of {PPL_CTX}): {ppl['ppl']:.4f} +/- "
          f"{ppl['ppl_stderr']:.5f}", file=sys.stderr)
    golden = {
        "generator": "scripts/ref/make_logits_golden.py",
        "llama_cpp_python": llama_cpp.__version__,
        "reference_model": os.path.basename(ref_path),
        "settings": f"F32 weights, type_k=type_v=F32, flash_attn off, logits_all, n_threads 2, n_batch {n_ctx}",
        "texts": texts,
        "perplexity": ppl,
    }
    del llm
    for label, path in extra_paths:
        llm2 = open_llama(path, n_ctx)
        golden[label] = {k: position_stats(all_logits(llm2, v["tokens"]), v["tokens"]) for k, v in texts.items()}
        del llm2
    with open(out_path, "w") as f:
        json.dump(golden, f, separators=(",", ":"))
        f.write("\n")
    print(f"  wrote {out_path} ({os.path.getsize(out_path)} bytes)", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=["smollm2", "stories260k", "qwen0.5b", "qwen1.5b", "gemma3-270m"])
    args = ap.parse_args()
    models = os.path.join(CACHE, "models")
    os.makedirs(GOLDEN, exist_ok=True)
    if args.only in (None, "stories260k"):
        v3 = os.path.join(models, "stories260K-f32.v3.gguf")
        if not os.path.exists(v3):
            write_v3_copy(os.path.join(SHARED, "models", "stories260K", "stories260K-f32.gguf"), v3)
        golden_for("stories260K", v3, [], os.path.join(GOLDEN, "logits_stories260k.json"))
    if args.only in (None, "smollm2"):
        q41 = os.path.join(models, "SmolLM2-135M-Instruct.Q4_1.gguf")
        f32 = os.path.join(models, "SmolLM2-135M-Instruct.F32.gguf")
        if not os.path.exists(f32):
            print(f"writing {f32}", file=sys.stderr)
            write_f32_copy(q41, f32)
        golden_for("SmolLM2-135M-Instruct", f32, [("q4_1_positions", q41)],
                   os.path.join(GOLDEN, "logits_smollm2.json"))
    global PPL_CHUNKS
    for key, chunks in (("qwen0.5b", 4), ("qwen1.5b", 2)):  # 4.7x and 13x SmolLM2's parameters
        PPL_CHUNKS = chunks
        if args.only not in (None, key):
            continue
        size = key[4:]
        q = os.path.join(models, f"qwen2.5-coder-{size}-instruct-q4_k_m.gguf")
        f32 = os.path.join(models, f"qwen2.5-coder-{size}-instruct.F32.gguf")
        if not os.path.exists(q):
            print(f"note: {q} is missing (bash scripts/fetch_models.sh {key}); skipped", file=sys.stderr)
            continue
        if not os.path.exists(f32):
            ctrust_f32_copy(q, f32)
        verify_f32_copy(q, f32)
        golden_for(f"Qwen2.5-Coder-{size.upper()}-Instruct", f32, [("q4_k_m_positions", q)],
                   os.path.join(GOLDEN, f"logits_{key}.json"))
    if args.only in (None, "gemma3-270m"):
        PPL_CHUNKS = 4
        q = os.path.join(models, "gemma-3-270m-q4_k_m.gguf")
        f32 = os.path.join(models, "gemma-3-270m.F32.gguf")
        if not os.path.exists(q):
            print(f"note: {q} is missing (bash scripts/fetch_models.sh gemma3-270m); skipped", file=sys.stderr)
        else:
            if not os.path.exists(f32):
                ctrust_f32_copy(q, f32)
            verify_f32_copy(q, f32)
            golden_for("Gemma-3-270M", f32, [("q4_k_m_positions", q)],
                       os.path.join(GOLDEN, "logits_gemma3-270m.json"), long_tokens=700)


if __name__ == "__main__":
    main()
