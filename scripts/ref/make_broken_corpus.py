#!/usr/bin/env python3
"""Writes tests/data/broken/: tiny broken model files, one problem each (see tests/test_gguf.cpp GgufBroken
and tests/test_hf.cpp HfBroken for the error each must produce). Deterministic; re-run to regenerate.

The GGUF files are built by hand with struct (not with a GGUF library) so that each can break exactly one
rule. The base model is a valid 1-layer Llama (dim 4, 2 heads, FFN 4, vocab 4, F32) that ctrust loads.
"""
import json
import os
import struct

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
out = os.path.join(root, "tests", "data", "broken")
os.makedirs(out, exist_ok=True)

U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)


def s(x: str) -> bytes:
    b = x.encode()
    return struct.pack("<Q", len(b)) + b


def val(t, v) -> bytes:
    if t == STR:
        return s(v)
    if t == ARR:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(val(et, i) for i in items)
    return struct.pack("<" + {U8: "B", I8: "b", U16: "H", I16: "h", U32: "I", I32: "i", F32: "f", BOOL: "?",
                              U64: "Q", I64: "q", F64: "d"}[t], v)


def kv(key, t, v) -> bytes:
    return s(key) + struct.pack("<I", t) + val(t, v)


DIM, HEADS, FF, VOCAB = 4, 2, 4, 4


def base_kvs(arch="llama", vocab=VOCAB, tokenizer=True):
    k = [("general.architecture", STR, arch),
         (f"{arch}.context_length", U32, 16),
         (f"{arch}.embedding_length", U32, DIM),
         (f"{arch}.block_count", U32, 1),
         (f"{arch}.feed_forward_length", U32, FF),
         (f"{arch}.attention.head_count", U32, HEADS),
         (f"{arch}.attention.layer_norm_rms_epsilon", F32, 1e-5)]
    if tokenizer:
        toks = ["<unk>", "<s>", "</s>", "a", "b", "c", "d", "e"][:vocab]
        k += [("tokenizer.ggml.model", STR, "llama"),
              ("tokenizer.ggml.tokens", ARR, (STR, toks)),
              ("tokenizer.ggml.scores", ARR, (F32, [0.0] * vocab)),
              ("tokenizer.ggml.token_type", ARR, (I32, [2, 3, 3] + [1] * (vocab - 3))),
              ("tokenizer.ggml.bos_token_id", U32, 1),
              ("tokenizer.ggml.eos_token_id", U32, 2)]
    return k


def base_tensors(vocab_rows=VOCAB):
    t = [("token_embd.weight", [DIM, vocab_rows]), ("output_norm.weight", [DIM])]
    for n, ne in [("attn_norm", [DIM]), ("attn_q", [DIM, DIM]), ("attn_k", [DIM, DIM]), ("attn_v", [DIM, DIM]),
                  ("attn_output", [DIM, DIM]), ("ffn_norm", [DIM]), ("ffn_gate", [DIM, FF]),
                  ("ffn_up", [DIM, FF]), ("ffn_down", [FF, DIM])]:
        t.append((f"blk.0.{n}.weight", ne))
    return [(name, ne, 0) for name, ne in t]  # type F32


def build(kvs, tensors, version=3, align=32, data=True, offsets=None, raw_ne=None):
    """tensors: (name, ne, type). Returns bytes; offsets override the computed ones."""
    h = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    h += b"".join(kv(*e) for e in kvs)
    body = b""
    off = 0
    for i, (name, ne, typ) in enumerate(tensors):
        h += s(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne)
        o = offsets[i] if offsets and i in offsets else off
        h += struct.pack("<IQ", typ, o)
        n = 1
        for d in ne:
            n *= d
        nbytes = 4 * n if typ == 0 and n < 1 << 20 else 0
        chunk = b"".join(struct.pack("<f", ((j * 7 + i) % 11 - 5) / 10) for j in range(nbytes // 4))
        chunk += b"\0" * ((-len(chunk)) % align)
        body += chunk
        off += len(chunk)
    h += b"\0" * ((-len(h)) % align)
    return h + (body if data else b"")


def write(name, data: bytes):
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)


good = build(base_kvs(), base_tensors())
write("valid_tiny.gguf", good)  # the control: loads fine
write("empty.gguf", b"")
write("bad_magic.gguf", b"GGUX" + good[4:64])
write("unsupported_version.gguf", b"GGUF" + struct.pack("<I", 7) + good[8:64])
write("truncated_header.gguf", good[:300])
write("truncated_tensor_data.gguf", good[:len(good) - 40])
write("tensor_offset_past_eof.gguf", build(base_kvs(), base_tensors(), offsets={3: 1 << 40}))
write("misaligned_offset.gguf", build(base_kvs(), base_tensors(), offsets={3: 68}))
write("overlapping_tensors.gguf", build(base_kvs(), base_tensors(), offsets={3: 0}))
t = base_tensors()
t[4] = ("blk.0.attn_k.weight", [1 << 62, 1 << 62], 0)
write("shape_overflow.gguf", build(base_kvs(), t))
t = base_tensors()
t[2] = ("blk.0.attn_norm.weight", [DIM], 99)
write("unknown_tensor_type.gguf", build(base_kvs(), t))
t = base_tensors()
t[2] = ("blk.0.attn_norm.weight", [DIM, 1, 1, 1, 1], 0)
write("too_many_dims.gguf", build(base_kvs(), t))
t = base_tensors()
t[5] = ("blk.0.attn_q.weight", [DIM, DIM], 0)
write("duplicate_tensor.gguf", build(base_kvs(), t))
write("unknown_architecture.gguf", build(base_kvs(arch="gpt5"), base_tensors()))
write("missing_tokenizer.gguf", build(base_kvs(tokenizer=False), base_tensors()))
write("vocab_mismatch.gguf", build(base_kvs(vocab=VOCAB), base_tensors(vocab_rows=VOCAB + 2)))
write("missing_tensor.gguf", build(base_kvs(), [x for x in base_tensors() if x[0] != "blk.0.ffn_up.weight"]))
t = base_tensors()
t = [(n, [FF + 2, DIM] if n == "blk.0.ffn_down.weight" else ne, ty) for n, ne, ty in t]
write("wrong_shape.gguf", build(base_kvs(), t))
bad_heads = [e for e in base_kvs() if e[0] != "llama.attention.head_count"] + [("llama.attention.head_count", U32, 3)]
write("heads_do_not_divide.gguf", build(bad_heads, base_tensors()))
# A string whose length runs past the end of the file (general.architecture's value).
h = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + s("general.architecture") + struct.pack("<IQ", STR, 1000000000) + b"llama"
write("string_past_eof.gguf", h)
h = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + s("tokenizer.ggml.tokens") + struct.pack("<IIQ", ARR, STR, 1 << 60)
write("array_past_eof.gguf", h + b"\0" * 16)
h = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + s("general.name") + struct.pack("<I", 42) + b"\0" * 8
write("unknown_value_type.gguf", h)
h = b"GGUF" + struct.pack("<IQQ", 3, 0, 1000000) + s("general.name")
write("absurd_kv_count.gguf", h)

# ---- Hugging Face folders (safetensors)
def st_file(tensors, header_override=None, data_len=None):
    """tensors: (name, dtype, shape, nbytes). Data zero-filled."""
    hdr = {}
    off = 0
    for name, dtype, shape, nbytes in tensors:
        hdr[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + nbytes]}
        off += nbytes
    j = json.dumps(header_override if header_override is not None else hdr).encode()
    j += b" " * ((-len(j)) % 8)
    return struct.pack("<Q", len(j)) + j + b"\0" * (off if data_len is None else data_len)


def hf_dir(name, st_bytes, config=None):
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    cfg = config or {"architectures": ["LlamaForCausalLM"], "hidden_size": DIM, "intermediate_size": FF,
                     "num_hidden_layers": 1, "num_attention_heads": HEADS, "num_key_value_heads": HEADS,
                     "rms_norm_eps": 1e-5, "vocab_size": VOCAB, "max_position_embeddings": 16,
                     "tie_word_embeddings": True}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)
    with open(os.path.join(d, "tokenizer.json"), "w") as f:
        json.dump({"model": {"type": "BPE", "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "a": 3}, "merges": []}}, f)
    with open(os.path.join(d, "model.safetensors"), "wb") as f:
        f.write(st_bytes)


emb = ("model.embed_tokens.weight", "F32", [VOCAB, DIM], VOCAB * DIM * 4)
hf_dir("hf_header_past_eof", struct.pack("<Q", 1 << 40) + b"{}")
hf_dir("hf_bad_json", struct.pack("<Q", 8) + b"{not js}")
hf_dir("hf_offsets_outside", st_file([emb], data_len=10))
hf_dir("hf_int_dtype", st_file([("model.embed_tokens.weight", "I32", [VOCAB, DIM], VOCAB * DIM * 4)]))
hf_dir("hf_shape_mismatch", st_file([("model.embed_tokens.weight", "F32", [VOCAB, DIM], 12)]))
hf_dir("hf_unknown_arch", st_file([emb]), config={"architectures": ["GPT2LMHeadModel"], "hidden_size": DIM})
print("wrote", len(os.listdir(out)), "entries to", out)

# ---- Issue 15 reproducers (tests/test_hardening.cpp): tiny files whose headers claim far more than they hold.
# Files that must be large to reproduce (a GGUF with a big uint8 array) are generated by the test itself.
import bz2

out = os.path.join(root, "tests", "data", "hardening")
os.makedirs(out, exist_ok=True)
# 1. llama2.c header with every dimension at the 2^20 limit: 28 bytes that claim ~2^66 bytes of weights.
write("llama2c_huge_header.bin", struct.pack("<7i", 1 << 20, 1 << 20, 1 << 20, 1 << 10, 1 << 10, 1 << 20, 1 << 20))
# 2. A bzip2 bomb: a few hundred bytes that decompress to 1 GB of newlines.
write("bomb.jsonl.bz2", bz2.compress(b"\n" * (1 << 30), 9))
# 9. Empty data (plain and bzip2).
write("empty.jsonl", b"")
write("empty.jsonl.bz2", bz2.compress(b""))
# 4. config.json with hidden_size 1e300 (float-to-int cast before the range check).
cfg = {"architectures": ["LlamaForCausalLM"], "hidden_size": 1e300, "intermediate_size": FF, "num_hidden_layers": 1,
       "num_attention_heads": HEADS, "rms_norm_eps": 1e-5, "vocab_size": VOCAB}
hf_dir("../hardening/hf_hidden_1e300", st_file([emb]), config=cfg)
# 11. A GGUF whose byte-level BPE (gpt2) tokenizer has an empty merges list.
k = [e for e in base_kvs() if not e[0].startswith("tokenizer.")]
k += [("tokenizer.ggml.model", STR, "gpt2"), ("tokenizer.ggml.tokens", ARR, (STR, ["a", "b", "c", "d"])),
      ("tokenizer.ggml.token_type", ARR, (I32, [1, 1, 1, 1])), ("tokenizer.ggml.merges", ARR, (STR, []))]
write("bpe_no_merges.gguf", build(k, base_tensors()))
print("wrote", len(os.listdir(out)), "entries to", out)
