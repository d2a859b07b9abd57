#!/usr/bin/env python3
"""Regenerates tests/golden/compress_llamacpp.json: llama.cpp's perplexity of GPTQ models written by
`ctrust compress` as packed GGUF Q4_1 / Q4_0 / Q8_0 (group 32), for the ctest CompressGolden.*.

For every set (stories260K; SmolLM2-135M-Instruct Q4_1 if it is in the cache) and every variant:
  1. `ctrust compress --method gptq` with a fixed seed and a small calibration (deterministic);
  2. `ctrust convert --type f32` of that file (the same dequantized weights stored as F32);
  3. llama.cpp (llama-cpp-python, F32 KV cache, no flash attention) perplexity with llama.cpp's protocol
     (tools/perplexity): text -> tokens with BOS, chunks of n_ctx, the first token of a chunk replaced by
     BOS, every chunk from an empty cache, positions n_ctx/2 .. n_ctx-2 scored; NLL in float64 from
     llama.cpp's float32 logits;
       "llamacpp_native": the packed file: llama.cpp's Q4/Q8 dot products round the activations to 8 bits
                          (q8_0 / q8_1 blocks), ctrust does not (it dequantizes the weights to f32);
       "llamacpp_f32":    the F32 copy: the same arithmetic as ctrust's engine up to summation order;
  4. "ctrust": `ctrust perplexity --json` on the packed file (for the report; the test recomputes it).
The hash "data_fnv1a64" is FNV-1a 64 over the file's tensor-data section (from its aligned start to the end
of the file): the weights only, not the metadata (which holds the calibration file's path).

Usage: python3 scripts/ref/make_compress_golden.py   (CTRUST_BIN = ctrust binary, default build/ctrust)
"""
import json, math, os, struct, subprocess, sys
import numpy as np
from llama_cpp import Llama

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.environ.get("CTRUST_CACHE", os.path.expanduser("~/.cache/ctrust"))
SHARED = os.environ.get("CTRUST_SHARED", os.path.join(ROOT, "..", "shared"))
BIN = os.environ.get("CTRUST_BIN", os.path.join(ROOT, "build", "ctrust"))
OUT = os.path.join(CACHE, "compress-golden")
TEXT_BYTES = 6000

VARIANTS = {  # name -> ctrust compress options (GPTQ, group 32)
    "q4_1": ["--bits", "4", "--asym"],
    "q4_0": ["--bits", "4", "--sym"],
    "q8_0": ["--bits", "8", "--sym"],
}
SETS = {
    # stories260K: ffn_down has 172 inputs, which 32 does not divide: it is left out (stays F32).
    "stories260k": dict(model=os.path.join(SHARED, "models", "stories260K", "stories260K-f32.gguf"),
                        extra=["--skip", "ffn_down"], nsamples=16, seqlen=128, seed=7, n_ctx=128, chunks=8),
    # SmolLM2 from the Q4_1 file the setup script fetches (ctrust dequantizes it to f32 at load); the tensors
    # GPTQ leaves alone (token_embd, norms) keep their Q4_1 / F32 bytes.
    "smollm2": dict(model=os.path.join(CACHE, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"),
                    extra=[], nsamples=8, seqlen=256, seed=7, n_ctx=256, chunks=4, variants=["q4_1"]),
}


def text_prefix():
    with open(os.path.join(SHARED, "data", "wikitext-2-raw", "wiki.test.raw"), "rb") as f:
        b = f.read(TEXT_BYTES)
    return b[: b.rindex(b"\n") + 1]


def gguf_data_start(path):
    """Offset of the tensor-data section of a GGUF v2/v3 file (parsed by hand, no gguf package needed)."""
    with open(path, "rb") as f:
        buf = f.read()
    pos = 0

    def rd(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return v[0]

    def rstr():
        nonlocal pos
        n = rd("Q")
        s = buf[pos:pos + n]
        pos += n
        return s.decode()

    sizes = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def rval(t):
        if t == 8:
            return rstr()
        if t == 9:
            et, n = rd("I"), rd("Q")
            return [rval(et) for _ in range(n)]
        return rd(sizes[t])

    assert buf[:4] == b"GGUF"
    pos = 4
    version = rd("I")
    assert version >= 2, version
    n_t, n_kv = rd("Q"), rd("Q")
    align = 32
    for _ in range(n_kv):
        k = rstr()
        v = rval(rd("I"))
        if k == "general.alignment":
            align = v
    for _ in range(n_t):
        rstr()
        nd = rd("I")
        for _ in range(nd):
            rd("Q")
        rd("I")
        rd("Q")
    return (pos + align - 1) // align * align, buf


def data_hash(path):
    start, buf = gguf_data_start(path)
    h = 0xcbf29ce484222325
    for b in buf[start:]:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def llama_ppl(path, tokens, n_ctx, n_chunks, bos):
    llm = Llama(model_path=path, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, logits_all=True, n_threads=2,
                verbose=False, type_k=0, type_v=0, flash_attn=False)
    first = n_ctx // 2
    nll = []
    for c in range(n_chunks):
        chunk = list(tokens[c * n_ctx:(c + 1) * n_ctx])
        if bos is not None:
            chunk[0] = bos
        llm.reset()
        llm.eval(chunk)
        rows = np.array(llm.scores[first:n_ctx - 1], dtype=np.float64)
        for j, row in enumerate(rows):
            m = row.max()
            nll.append(m + math.log(np.exp(row - m).sum()) - row[chunk[first + j + 1]])
    del llm
    return math.exp(float(np.mean(nll))), len(nll)


def run(cmd):
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def main():
    os.makedirs(OUT, exist_ok=True)
    text = text_prefix()
    tpath = os.path.join(OUT, "text.txt")
    with open(tpath, "wb") as f:
        f.write(text)
    golden = {"text": "wikitext-2-raw/wiki.test.raw", "text_bytes": len(text), "sets": {}}
    for name, s in SETS.items():
        if not os.path.exists(s["model"]):
            print("skipping", name, "(no", s["model"] + ")")
            continue
        n_ctx, n_chunks = s["n_ctx"], s["chunks"]
        entry = {"model": os.path.basename(s["model"]), "nsamples": s["nsamples"], "seqlen": s["seqlen"],
                 "seed": s["seed"], "extra": s["extra"], "n_ctx": n_ctx, "n_chunks": n_chunks, "variants": {}}
        for v, opts in VARIANTS.items():
            if v not in s.get("variants", VARIANTS):
                continue
            packed = os.path.join(OUT, f"{name}.gptq.{v}.gguf")
            f32 = os.path.join(OUT, f"{name}.gptq.{v}.f32.gguf")
            run([BIN, "compress", "-m", s["model"], "--method", "gptq", "--group-size", "32", *opts, *s["extra"],
                 "--calib-raw", "--nsamples", str(s["nsamples"]), "--seqlen", str(s["seqlen"]), "--seed", str(s["seed"]),
                 "-o", packed, "-t", "2"])
            run([BIN, "convert", "-m", packed, "-o", f32, "--type", "f32"])
            probe = Llama(model_path=packed, n_ctx=n_ctx, vocab_only=True, verbose=False)
            tokens = probe.tokenize(text, add_bos=True, special=False)
            add_bos = len(probe.tokenize(b"a", add_bos=True)) > len(probe.tokenize(b"a", add_bos=False))
            bos = probe.token_bos() if add_bos else None
            del probe
            assert len(tokens) >= n_ctx * n_chunks, (name, len(tokens))
            native, n = llama_ppl(packed, tokens, n_ctx, n_chunks, bos)
            plain, _ = llama_ppl(f32, tokens, n_ctx, n_chunks, bos)
            ours = json.loads(run([BIN, "perplexity", "-m", packed, "-f", tpath, "--ctx", str(n_ctx), "--chunks",
                                   str(n_chunks), "--json", "-t", "2"]))
            info = json.loads(run([BIN, "info", packed, "--json"]))
            types = info.get("tensor_types", {})  # {"f32": count, "q4_0": count, ...}
            entry["variants"][v] = {"options": opts, "data_fnv1a64": data_hash(packed), "n_tokens": len(tokens),
                                    "n_scored": n, "llamacpp_native": native, "llamacpp_f32": plain,
                                    "ctrust": ours.get("ppl"), "tensor_types": types,
                                    "tokens_head": [int(t) for t in tokens[:n_ctx * n_chunks]]}
            print(f"{name} {v}: llama.cpp native {native:.6f}  llama.cpp F32 copy {plain:.6f}  "
                  f"ctrust {ours.get('ppl')}  rel.diff native {native / plain - 1:+.3e}", flush=True)
        golden["sets"][name] = entry
    path = os.path.join(ROOT, "tests", "golden", "compress_llamacpp.json")
    with open(path, "w") as f:
        json.dump(golden, f, indent=1)
    print("wrote", path)


if __name__ == "__main__":
    sys.exit(main())
