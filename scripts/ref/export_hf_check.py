#!/usr/bin/env python3
"""Round-trip check of `ctrust export-hf` (issue 12, point 5) with the packages the formats come from.

Loads a folder written by `ctrust export-hf` with
  * GPTQ: transformers + optimum + auto-gptq (CPU: auto-gptq's QuantLinear, torch dequantization path), and
  * AWQ:  AutoAWQ's own WQLinear_GEMM modules (autoawq 0.2.9; transformers refuses AWQ without a GPU, so the
          Linears of a transformers Llama/Qwen2 model are replaced with WQLinear_GEMM.from_linear(init_only=True)
          and the exported tensors loaded into them; the forward runs AutoAWQ's naive CPU path,
          `dequantize_gemm` + matmul, in fp16 as AutoAWQ does),
and compares the logits on a few real prompts with ctrust's (the `ctrust` Python module, f32 compute) on
  (a) the compressed GGUF the folder was exported from, and
  (b) the exported folder itself (ctrust's Hugging Face loader dequantizes the GPTQ/AWQ tensors),
plus, for AWQ, the package's own unpacking (awq.utils.packing_utils.unpack_awq + reverse_awq_order) against
ctrust's (an identity input through auto-gptq's QuantLinear of the GPTQ export of the same GGUF: each column of
`QuantLinear(I)` is one dequantized weight row, exactly).

The venv (CPU only; torch from PyPI):
    python3 -m venv /work/venv-hf
    /work/venv-hf/bin/pip install torch==2.15.0 transformers==4.51.3 optimum==2.3.0 safetensors numpy
    BUILD_CUDA_EXT=0 /work/venv-hf/bin/pip install --no-build-isolation auto-gptq==0.7.1
    /work/venv-hf/bin/pip install --no-deps autoawq==0.2.9      # its torch pin does not matter on the CPU path
ctrust's module: the build tree's (PYTHONPATH=build/python; the same Python 3.11).

Usage (from the repository root):
    PYTHONPATH=build/python /work/venv-hf/bin/python scripts/ref/export_hf_check.py \
        --gguf gptq4g64zp.gguf --hf hf-gptq4g64zp [--gptq-of-same HFDIR (AWQ)] [--json out.json]

Tolerances (why): both sides compute in f32 with different summation orders (BLAS sgemm vs torch's matmul,
attention and RMSNorm written differently), so identical weights give logits that differ by ~1e-5 relative; we
require max |d logit| <= 2e-3 (absolute; the logits are O(10)) and 100% top-1 agreement for GPTQ. AWQ's CPU
path casts activations and weights to fp16 (11-bit significand) in every Linear, so its logits move by
~1e-2..1e-1: we require max |d logit| <= 0.5 and top-1 agreement >= 95% of the positions, and check the
weights exactly instead.
"""
import argparse
import json
import math
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
    for (ids, a), b in zip(ref, got):
        worst = max(worst, float(np.max(np.abs(a - b))))
        agree += int(np.sum(a.argmax(-1) == b.argmax(-1)))
        n += a.shape[0]
    r = {"max_abs_dlogit": worst, "top1_agree": agree, "positions": n, "top1_rate": agree / n}
    print(f"{name}: max |d logit| {worst:.3g}, top-1 agreement {agree}/{n}")
    return r


def hf_gptq_logits(hfdir, ids_list):
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(hfdir, torch_dtype=torch.float32, device_map="cpu")
    model = model.float()  # scales (fp16 buffers) to f32 exactly: (q - z) * s then rounds once, in f32
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
                y = mod(eye)
                if getattr(mod, "bias", None) is not None:
                    y = y - mod.bias
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
    missing = [k for k in missing if not k.endswith((".bias",)) and "rotary" not in k]
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
    ap.add_argument("--gptq-of-same", help="AWQ: a GPTQ export of the same GGUF (exact weight cross-check)")
    ap.add_argument("--json", help="write the results here")
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
        res["modules"] = kinds
        print("quantized modules:", kinds)
        res["package_vs_ctrust"] = compare("transformers+auto-gptq vs ctrust (GGUF)", ref, got)
        ok = res["package_vs_ctrust"]["max_abs_dlogit"] <= 2e-3 and res["package_vs_ctrust"]["top1_rate"] == 1.0
    else:
        model, bits, group = awq_model(a.hf)
        res["modules"] = sorted({type(m).__name__ for m in model.modules() if hasattr(m, "qweight")})
        got = []
        with torch.no_grad():
            for ids in ids_list:
                got.append(model(torch.tensor([ids])).logits[0].float().numpy())
        res["package_vs_ctrust"] = compare("AutoAWQ WQLinear_GEMM (fp16 CPU path) vs ctrust (GGUF)", ref, got)
        ok = res["package_vs_ctrust"]["max_abs_dlogit"] <= 0.5 and res["package_vs_ctrust"]["top1_rate"] >= 0.95
        if a.gptq_of_same:
            wa = awq_weights(model, bits, group)
            _, _, gm = hf_gptq_logits(a.gptq_of_same, ids_list[:1])
            wg = gptq_dequant_weights(gm)
            diff, n = 0.0, 0
            for name, w in wa.items():
                g = wg[name]
                diff = max(diff, float(np.max(np.abs(w - g))))
                n += w.size
            res["awq_vs_gptq_weights"] = {"max_abs_diff": diff, "weights": n, "linears": len(wa)}
            print(f"AutoAWQ unpack vs auto-gptq dequantization of the same GGUF: max |d w| {diff} over {n} weights "
                  f"({len(wa)} Linears)")
            ok = ok and diff == 0.0
    res["ok"] = bool(ok)
    print("PASS" if ok else "FAIL")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
