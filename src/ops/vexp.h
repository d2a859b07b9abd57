// expf over a row, vectorized and bit-identical to the C library's (glibc's) expf, and the softmax built on it.
//
// glibc (2.27 and later; Debian 12 ships 2.36) computes expf in double (sysdeps/ieee754/flt-32/e_expf.c, the ARM
// optimized-routines algorithm): z = x * 32/ln2 rounded to an integer k by a shift constant, r = z - k,
// 2^(k/32) from a 32-entry table with k's high bits added to the exponent, a degree-3 polynomial in r, and the
// product rounded once to float. On x86-64 with FMA and AVX2 it runs the variant built with -mfma (__expf_fma),
// whose compiled code fuses k's rounding (fma(x, 32/ln2, shift)), r (fma(x, 32/ln2, -k)) and three of the
// polynomial's steps. exp_f32 does those same double operations in 512-bit (8 doubles) or 256-bit (4 doubles)
// registers, so every lane rounds as the scalar function does. Inputs outside the main path: below
// -0x1.9fe368p6f (and -inf) give +0 and [-0x1.9fe368p6f, -0x1.9d1d9ep6f) the smallest subnormal, as glibc's
// underflow paths return; NaN and x > 0x1.62e42ep6f (overflow) call std::exp for those lanes. Checked against
// std::exp for every float (scripts/check_expf.sh, docs/correctness.md) and on a sample in the unit tests
// (Ops.ExpfKernelEqualsLibm). At first use a sample of inputs is compared with std::exp: if this C library computes
// expf differently (another libm, the non-FMA variant), exp_f32 and softmax use std::exp and stay exact.
#pragma once
#include <cstdint>

#include "ops/qmatmul.h"  // KernelIsa

namespace ctrust {

// y[i] = std::exp(x[i]) for i < n, bit for bit (y may equal x).
void exp_f32(const float* x, float* y, int64_t n);
// The plain loop (reference twin).
void exp_f32_ref(const float* x, float* y, int64_t n);
// The kernel of one ISA (Ref: the plain loop), without the start-up check (tests, benchmarks).
void exp_f32_isa(const float* x, float* y, int64_t n, KernelIsa isa);
// Whether the vector kernels reproduced std::exp on the start-up sample (computed once).
bool exp_f32_matches_libm();

// softmax(x, n) (ops.h) as one ISA computes it: the max, e = exp(x - max) (exp_f32's kernel), their sum in double
// in index order, x *= (float)(1 / sum). Every ISA gives the floats of softmax_ref bit for bit (test
// Ops.SoftmaxKernelsEqualReference).
void softmax_isa(float* x, int n, KernelIsa isa);
// The plain loop: std::exp per element (reference twin of softmax).
void softmax_ref(float* x, int n);
// softmax of `rows` rows of n (row r at x + r * stride), equal to softmax on each: the rows' sums (each in index
// order) run interleaved, four rows at a time, so one sum's addition latency does not bound the loop.
void softmax_rows(float* x, int n, int rows, int64_t stride);
void softmax_rows_isa(float* x, int n, int rows, int64_t stride, KernelIsa isa);

}  // namespace ctrust
