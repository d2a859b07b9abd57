#!/usr/bin/env python3
"""Round-trip check of `ctrust export-hf` (issue 12, point 5) with the packages the formats come from.

Loads a folder written by `ctrust export-hf` with
  * GPTQ: auto-gptq 0.7.1's AutoGPTQForCausalLM.from_quantized (a transformers model whose Linears are auto-gptq's
          QuantLinear; CPU: its torch dequantization path; f32 model so scales are f32 copies of the fp16 ones).
          transformers + optimum do not load it here: optimum 2.x's GPTQ path needs gptqmodel, not auto-gptq
          (NameError QuantizeConfig); and
  * AWQ:  AutoAWQ's own WQLinear_GEMM modules (autoawq 0.2.9; transformers refuses AWQ without a GPU, so the
          Linears of a transformers Llama/Qwen2 model are replaced with WQLinear_GEMM.from_linear(init_only=True)
          and the exported tensors loaded into them; the forward runs AutoAWQ's naive CPU path,
          `dequantize_gemm` + matmul, in fp16 as AutoAWQ does),
and compares the logits on a few real prompts with ctrust's (the `ctrust` Python module, f32 compute) on
  (a) the compressed GGUF the folder was exported from, and
  (b) the exported folder itself (ctrust's Hugging Face loader dequantizes the GPTQ/AWQ tensors),
and every quantized Linear as the package dequantizes it against ctrust's weights of the GGUF (`ctrust` module,
Model.tensor; q/k rows of llama files un-permuted): GPTQ through auto-gptq's QuantLinear on an identity input
(QuantLinear(I) = I W^T, exact in f32), AWQ through AutoAWQ's unpack_awq + reverse_awq_order with (q - z) * s in
f32. These must be equal (0) for a GGUF whose grids are (q - z) * s (compress --zero-point or --sym); the default
affine fp16 form (q d + fp16(-z d)) moves by up to half an fp16 unit of the minimum (reported, not required).

The venv (CPU only; everything from PyPI). The venv used for docs/compression_results.md had torch, transformers,
optimum, safetensors and auto-gptq (built without its CUDA extension) installed already; autoawq was added with
the last line, exactly. To recreate it:
    python3 -m venv /work/venv-hf
    /work/venv-hf/bin/pip install torch==2.15.0 transformers==4.51.3 optimum==2.3.0 safetensors numpy
    BUILD_CUDA_EXT=0 /work/venv-hf/bin/pip install --no-build-isolation auto-gptq==0.7.1
    /work/venv-hf/bin/pip install --no-deps autoawq==0.2.9      # its torch pin does not matter on the CPU path
ctrust's module: the build tree's (PYTHONPATH=build/python; the same Python 3.11).

Usage (from the repository root):
    PYTHONPATH=build/python /work/venv-hf/bin/python scripts/ref/export_hf_check.py \
        --gguf gptq4g64zp.gguf --hf hf-gptq4g64zp [--json out.json]

Pass criterion: the package's logits against ctrust's on the same exported weights (b) within the tolerances below,
and the package's weights equal to ctrust's (within 2^-7 with --affine); (a) is reported beside.
Tolerances (why): both sides compute in f32 with different summation orders (BLAS sgemm vs torch's matmul,
attention and RMSNorm written differently), so identical weights give logits that differ by ~1e-5 relative; we
require max |d logit| <= 2e-3 (absolute; the logits are O(10)) and 100% top-1 agreement for GPTQ. AWQ's CPU
path casts activations and weights to fp16 (11-bit significand) in every Linear, so its logits move by
~1e-2..1e-1: we require max |d logit| <= 0.5 and top-1 agreement >= 95% of the positions, and check the
weights exactly instead.
"""
import argparse
import json
import os
import sys
import warnings

import numpy as np
import torch

PROMPTS = [
    "The capital of France is Paris. The capital of Germany is",
    "Robert Boulter is an English film and television actor. He had a guest @-@ starring role on the television "
    "series The Bill in 2000.",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
    "<|im_start|>user\nWhat is 17 times 3?<|im_end|>\n<|im_start|>assistant\n",
    "In 1859, Charles Darwin published On the Origin of Species, which introduced the theory that populations",
]


def ctrust_logits(path, prompts):
    import ctrust
    m = ctrust.load(path)
    out = []
    for p in prompts:
        ids = m.tokenize(p, special=True)
        out.append((ids, np.asarray(m.logits(ids), dtype=np.float32)))
    return out


def compare(name, ref, got):
    worst, agree, n = 0.0, 0, 0
    for r, b in zip(ref, got):
        a = r[1] if isinstance(r, tuple) else r
        b = b[1] if isinstance(b, tuple) else b
        worst = max(worst, float(np.max(np.abs(a - b))))
        agree += int(np.sum(a.argmax(-1) == b.argmax(-1)))
        n += a.shape[0]
    r = {"max_abs_dlogit": worst, "top1_agree": agree, "positions": n, "top1_rate": agree / n}
    print(f"{name}: max |d logit| {worst:.3g}, top-1 agreement {agree}/{n}")
    return r


HF_TO_GGUF = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
              "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
              "mlp.down_proj": "ffn_down"}


def compare_weights(gguf, pw):
    """max |package weight - ctrust's GGUF weight| over the quantized Linears (GGUF llama q/k rows are in
    llama.cpp's interleaved RoPE order: HF row h*d + j*d/2 + i is GGUF row h*d + 2i + j)."""
    import ctrust
    m = ctrust.load(gguf)
    cfg = m.config
    worst, n = 0.0, 0
    for name, w in pw.items():
        parts = name.split(".")  # model.layers.N.self_attn.q_proj
        layer, kind = parts[2], HF_TO_GGUF[".".join(parts[3:5])]
        g = np.asarray(m.tensor(f"blk.{layer}.{kind}.weight"))
        if cfg["rope_layout"] == "interleaved" and kind in ("attn_q", "attn_k"):
            heads = cfg["n_heads"] if kind == "attn_q" else cfg["n_kv_heads"]
            d = g.shape[0] // heads
            src = np.array([hh * d + 2 * i + j for hh in range(heads) for j in range(2) for i in range(d // 2)])
            g = g[src]
        worst = max(worst, float(np.max(np.abs(w - g))))
        n += w.size
    print(f"package dequantization vs ctrust's GGUF weights: max |d w| {worst} over {n} weights ({len(pw)} Linears)")
    return {"max_abs_diff": worst, "weights": n, "linears": len(pw)}


def hf_gptq_logits(hfdir, ids_list):
    """auto-gptq's own loader (optimum 2.x loads GPTQ through gptqmodel only, not auto-gptq)."""
    from auto_gptq import AutoGPTQForCausalLM
    q = AutoGPTQForCausalLM.from_quantized(hfdir, device="cpu", use_safetensors=True, model_basename="model",
                                           use_triton=False, disable_exllama=True, disable_exllamav2=True,
                                           torch_dtype=torch.float32)
    model = q.model
    if model.config.tie_word_embeddings:
        # auto-gptq 0.7.1 + transformers 4.51 leave a tied embedding at zeros (the checkpoint, as HF's own tied
        # checkpoints, has no lm_head.weight; the tie made at load points both at the empty head): set it from the file.
        from safetensors import safe_open
        with safe_open(os.path.join(hfdir, "model.safetensors"), "pt") as f:
            emb = f.get_tensor("model.embed_tokens.weight")
        with torch.no_grad():
            model.get_input_embeddings().weight.copy_(emb)
        model.tie_weights()
    model.eval()
    kinds = sorted({type(mod).__module__ + "." + type(mod).__name__ for mod in model.modules()
                    if hasattr(mod, "qweight")})
    out = []
    with torch.no_grad():
        for ids in ids_list:
            out.append(model(torch.tensor([ids])).logits[0].float().numpy())
    return out, kinds, model


def gptq_dequant_weights(model):
    """Each QuantLinear's weight [out][in], dequantized by auto-gptq's own forward: QuantLinear(I) = I @ W^T."""
    w = {}
    with torch.no_grad():
        for name, mod in model.named_modules():
            if hasattr(mod, "qweight") and hasattr(mod, "g_idx"):
                eye = torch.eye(mod.infeatures, dtype=torch.float32)
                bias, mod.bias = mod.bias, None  # (y - bias would round)
                y = mod(eye)
                mod.bias = bias
                w[name] = y.t().contiguous().numpy()
    return w


def awq_model(hfdir):
    import awq.modules.linear.gemm as gemm
    from awq.modules.linear.gemm import WQLinear_GEMM
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM
    gemm.TRITON_AVAILABLE = False  # the CPU path (no CUDA): awq_ext is absent, Triton needs a GPU
    cfg = AutoConfig.from_pretrained(hfdir)
    qc = cfg.quantization_config
    del cfg.quantization_config
    bits, group = qc["bits"], qc["group_size"]
    model = AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.float32)
    sd = load_file(os.path.join(hfdir, "model.safetensors"))
    for name, mod in list(model.named_modules()):
        for cname, child in list(mod.named_children()):
            full = f"{name}.{cname}" if name else cname
            if isinstance(child, torch.nn.Linear) and full + ".qweight" in sd:
                q = WQLinear_GEMM.from_linear(child, bits, group, init_only=True)
                q.qweight.copy_(sd.pop(full + ".qweight"))
                q.qzeros.copy_(sd.pop(full + ".qzeros"))
                q.scales.copy_(sd.pop(full + ".scales"))
                if child.bias is not None:
                    q.bias = child.bias
                setattr(mod, cname, q)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    # (the WQLinear buffers were copied above; Linears without bias have none)
    missing = [k for k in missing if not k.endswith((".bias", ".qweight", ".qzeros", ".scales")) and "rotary" not in k]
    if cfg.tie_word_embeddings:
        model.tie_weights()
        missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise SystemExit(f"AWQ load: missing {missing[:5]} unexpected {unexpected[:5]}")
    model.eval()
    return model, bits, group


def awq_weights(model, bits, group):
    """Package unpacking: unpack_awq + reverse_awq_order; (q - z) * s computed in f32 (exact)."""
    from awq.utils.packing_utils import reverse_awq_order, unpack_awq
    w = {}
    for name, mod in model.named_modules():
        if type(mod).__name__ == "WQLinear_GEMM":
            iw, iz = unpack_awq(mod.qweight, mod.qzeros, bits)
            iw, iz = reverse_awq_order(iw, iz, bits)
            iw = torch.bitwise_and(iw, 2**bits - 1).to(torch.int32)
            iz = torch.bitwise_and(iz, 2**bits - 1).to(torch.int32)
            s = mod.scales.float().repeat_interleave(group, dim=0)
            z = iz.repeat_interleave(group, dim=0)
            w[name] = ((iw - z).float() * s).t().contiguous().numpy()  # [out][in]
    return w


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", required=True, help="the compressed GGUF file the folder was exported from")
    ap.add_argument("--hf", required=True, help="the folder written by ctrust export-hf")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--affine", action="store_true",
                    help="the GGUF has the default affine fp16 grids (not --zero-point): weights within 2^-7, not equal")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    warnings.filterwarnings("ignore")
    with open(os.path.join(a.hf, "config.json")) as f:
        qc = json.load(f)["quantization_config"]
    fmt = qc["quant_method"]
    res = {"gguf": a.gguf, "hf": a.hf, "format": fmt, "quantization_config": qc, "prompts": PROMPTS}

    ref = ctrust_logits(a.gguf, PROMPTS)
    ids_list = [ids for ids, _ in ref]
    res["tokens"] = sum(len(i) for i in ids_list)
    own = ctrust_logits(a.hf, PROMPTS)
    res["ctrust_hf_vs_gguf"] = compare("ctrust on the export vs ctrust on the GGUF", ref, [l for _, l in own])
    # 0 when the GGUF's grids are (q - z) * s (compress --zero-point, --sym); the default affine fp16 form
    # q * d + fp16(-z d) is exported as (q - z) * d, half an fp16 unit of the minimum away.

    # The tokenizer written beside the weights must give ctrust's ids.
    from transformers import AutoTokenizer
    try:
        tok = AutoTokenizer.from_pretrained(a.hf)
        same = [tok(p, add_special_tokens=False)["input_ids"] == ids for p, ids in zip(PROMPTS, ids_list)]
        res["tokenizer_ids_equal"] = all(same)
        print(f"tokenizer.json: ids equal to ctrust's on {sum(same)}/{len(same)} prompts")
    except Exception as e:  # noqa: BLE001
        res["tokenizer_ids_equal"] = None
        print(f"tokenizer: not loaded ({e})")

    ok = True
    if fmt == "gptq":
        got, kinds, model = hf_gptq_logits(a.hf, ids_list)
        lm = model.get_output_embeddings().weight
        assert float(lm.abs().sum()) > 0, "lm_head not loaded"
        res["modules"] = kinds
        print("quantized modules:", kinds)
        res["package_vs_ctrust"] = compare("auto-gptq vs ctrust on the GGUF", ref, got)
        res["package_vs_ctrust_export"] = compare("auto-gptq vs ctrust on the export", own, got)
        pe = res["package_vs_ctrust_export"]
        ok = pe["max_abs_dlogit"] <= 2e-3 and pe["top1_rate"] == 1.0
    else:
        model, bits, group = awq_model(a.hf)
        res["modules"] = sorted({type(m).__name__ for m in model.modules() if hasattr(m, "qweight")})
        got = []
        with torch.no_grad():
            for ids in ids_list:
                got.append(model(torch.tensor([ids])).logits[0].float().numpy())
        res["package_vs_ctrust"] = compare("AutoAWQ WQLinear_GEMM (fp16 CPU path) vs ctrust on the GGUF", ref, got)
        res["package_vs_ctrust_export"] = compare("AutoAWQ WQLinear_GEMM (fp16 CPU path) vs ctrust on the export",
                                                  own, got)
        pe = res["package_vs_ctrust_export"]
        ok = pe["max_abs_dlogit"] <= 0.5 and pe["top1_rate"] >= 0.95
    # The package's own dequantization of every quantized Linear against ctrust's weights of the GGUF.
    pw = gptq_dequant_weights(model) if fmt == "gptq" else awq_weights(model, bits, group)
    res["weights"] = compare_weights(a.gguf, pw)
    # exact for (q - z) * s grids; --affine: the default fp16 affine form, half an fp16 unit of |m| < 16 (2^-7)
    ok = ok and res["weights"]["max_abs_diff"] <= (2.0**-7 if a.affine else 0.0)
    res["ok"] = bool(ok)
    print("PASS" if ok else "FAIL")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
