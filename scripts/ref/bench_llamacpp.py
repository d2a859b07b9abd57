#!/usr/bin/env python3
"""llama.cpp's speed on the same workload as bench/bench_engine.cpp, through llama-cpp-python:
prefill tokens/s (one eval of a P-token prompt, last logits only) and decode tokens/s (G single-token steps),
at each thread count; peak RSS of this process.

Usage: python3 scripts/ref/bench_llamacpp.py MODEL.gguf [--prompt 512] [--gen 128] [--threads 1,2] [--reps 2]
"""
import argparse
import resource
import time

import llama_cpp


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=2)
    a = ap.parse_args()
    n_ctx = a.prompt + a.gen
    print(f"llama.cpp (llama-cpp-python {llama_cpp.__version__}) on {a.model}")
    print(f"{'threads':<8} {'prefill tok/s':<22} {'decode tok/s':<22}")
    for nt in [int(x) for x in a.threads.split(",")]:
        llm = llama_cpp.Llama(model_path=a.model, n_ctx=n_ctx, n_batch=a.prompt, n_ubatch=a.prompt, n_threads=nt,
                              n_threads_batch=nt, logits_all=False, flash_attn=False, verbose=False)
        vocab = llm.n_vocab()
        prompt = [(i * 7919 + 13) % vocab for i in range(a.prompt)]
        if llm.token_bos() >= 0:
            prompt[0] = llm.token_bos()
        best_p = best_d = 0.0
        for _ in range(a.reps):
            llm.reset()
            t0 = time.perf_counter()
            llm.eval(prompt)
            best_p = max(best_p, a.prompt / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            for g in range(a.gen):
                llm.eval([(g * 31 + 7) % vocab])  # decode cost does not depend on which token
            best_d = max(best_d, a.gen / (time.perf_counter() - t0))
        print(f"{nt:<8} {best_p:<22.1f} {best_d:<22.1f} (prompt {a.prompt}, gen {a.gen}, best of {a.reps})")
        del llm
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MB")


if __name__ == "__main__":
    main()
