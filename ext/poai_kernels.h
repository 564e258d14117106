/*
 * poai_kernels.h -- portable scalar C kernels of poai's integer engine.
 *
 * Each function equals its NumPy definition in poai/engine/ops_reference.py
 * bit for bit; the rounding rules and overflow bounds are the ones written
 * there and in docs/ENGINE.md.  Callers (poai/engine/ops_native.py) check the
 * input ranges before calling, so these functions never see a value outside
 * the proven bounds.  Activations are int64 Q16; all arrays are C-contiguous.
 */
#ifndef POAI_KERNELS_H
#define POAI_KERNELS_H

#include <stdint.h>

#define POAI_QBLOCK 32

/* Fill the reciprocal seed table (call once, at module import). */
void poai_kernels_init(void);
/* The 257-entry seed table (tables.py:recip_table) and the reciprocal
 * recip_q30(d) ~= 2^60 / d for d in [2^30, 2^31] (docs/ENGINE.md). */
const int64_t *poai_recip_table(void);
int64_t poai_recip_q30(int64_t d);
/* For s >= 2^30 (s < 2^62): d = rshift_round(s, sh) in [2^30, 2^31] with
 * sh = bitlen(s) - 31 >= 0, so 1/s ~= recip_q30(d) * 2^-(60 + sh). */
int64_t poai_recip_normalize(int64_t s, int *sh);

/* 1 if this compiler's >> on negative int64 is arithmetic (required). */
int poai_arith_shift_ok(void);

/* Activation quantization (docs/ENGINE.md), per row of K (K % 32 == 0):
 * q [T*K] int16, block exponents e [T*K/32] int64 (scale 2^e, Q16), no
 * block more than POAI_EXP_SPREAD below its token's largest. */
#define POAI_EXP_SPREAD 10
#define POAI_ACT_QMAX 32767

/* A block's own exponent: the smallest e with amax <= 32767 * 2^e
 * (amax < 2^31: e = bitlen(amax) - 15, +1 if still too small, in [-15, 17]).
 * Inline (here, once) so a caller compiled for AVX2 vectorizes it. */
static inline int poai_block_exponent(const int64_t *x) {
    int64_t amax = 0;
    for (int i = 0; i < POAI_QBLOCK; i++) {
        int64_t a = x[i] < 0 ? -x[i] : x[i];
        amax = a > amax ? a : amax;
    }
    int e = (amax ? 64 - __builtin_clzll((uint64_t)amax) : 0) - 15;
    if (e > 0 && amax > ((int64_t)POAI_ACT_QMAX << e)) e += 1;
    return e;
}

/* q = x / 2^e rounded half up (rshift_round), for an e at least the block's
 * own exponent, so |q| <= 32767; e <= 0 is an exact left shift. */
static inline void poai_quantize_block(const int64_t *x, int e, int16_t *q) {
    if (e > 0) {
        int64_t half = (int64_t)1 << (e - 1);
        for (int i = 0; i < POAI_QBLOCK; i++) q[i] = (int16_t)((x[i] + half) >> e);
    } else {
        for (int i = 0; i < POAI_QBLOCK; i++) q[i] = (int16_t)(x[i] << -e);
    }
}
void poai_quantize_act(const int64_t *x, int64_t T, int64_t K, int16_t *q, int64_t *e);

/* RMSNorm of rows [T, n]: y = x * g / sqrt(mean(x^2) + eps); g Q24. */
void poai_rmsnorm(const int64_t *x, int64_t T, int64_t n, const int64_t *g,
                  int64_t eps_q32, int64_t *y);

/* The per-row part of a norm (docs/ENGINE.md "Normalization"): from the
 * row's sum of squares of x' = rshift_round(x, t) over n values, the
 * multiplier M (recip_q30 of the root) and the final shift. */
int64_t poai_norm_multiplier(int64_t sumsq, int64_t n, int t, int64_t eps_q32, int *shift);

/* AVX2 (ext/poai_ops_avx2.c), bit-identical to poai_rmsnorm / poai_rope;
 * call only where poai_cpu_has_avx2(). */
void poai_rmsnorm_avx2(const int64_t *x, int64_t T, int64_t n, const int64_t *g,
                       int64_t eps_q32, int64_t *y);
void poai_rope_avx2(int64_t *x, int64_t T, int64_t H, int64_t hd, int64_t n_rot,
                    const int64_t *cos_t, const int64_t *sin_t);
/* 1 if every |x[i]| < 2^bits (bits <= 62), with AVX2 where the CPU has it. */
int poai_in_range(const int64_t *x, int64_t n, int bits);
/* x[i] += y[i] */
void poai_add_inplace(int64_t *x, const int64_t *y, int64_t n);

/* LayerNorm: (x - mean) normalized, * g (Q24) + b (Q24). */
void poai_layernorm(const int64_t *x, int64_t T, int64_t n, const int64_t *g,
                    const int64_t *b, int64_t eps_q32, int64_t *y);

/* exp(z) in Q30 for z <= 0 (Q16); table = 1025 entries of 2^(i/1024) Q30. */
int64_t poai_exp_q30(int64_t z, const int64_t *table, int64_t log2e_q30);

/* out = silu(gate) * up, elementwise over n values; OpenMP over elements
 * (same bits for any nthreads >= 1). */
void poai_silu_mul(const int64_t *gate, const int64_t *up, int64_t n,
                   const int64_t *table, int64_t log2e_q30, int64_t *out, int nthreads);

/* GELU (tanh form), elementwise. */
void poai_gelu(const int64_t *x, int64_t n, const int64_t *table, int64_t log2e_q30,
               int64_t cubic_q30, int64_t scale_q30, int64_t *out);

/* Rotate adjacent pairs of x [T, H, hd] in place; cos/sin [T, n_rot/2] Q30. */
void poai_rope(int64_t *x, int64_t T, int64_t H, int64_t hd, int64_t n_rot,
               const int64_t *cos_t, const int64_t *sin_t);

/* Causal grouped-query attention of B independent sequences of T positions:
 * q [B*T, H, hd], k and v [B*T, Hkv, hd]; out [B*T, H, hd].
 * probs: NULL or [B, n_sel, T, T] filled (zeros above the diagonal) for the
 * query heads listed in sel[n_sel].  scratch: nthreads * (2T + hd) int64.
 * OpenMP over (sequence, head) pairs; same bits for any nthreads >= 1.
 * Returns 1 if a scaled score leaves |s16| < 2^31, else 0. */
int poai_attention_batch(const int64_t *q, const int64_t *k, const int64_t *v, int64_t B,
                         int64_t T, int64_t H, int64_t Hkv, int64_t hd, int64_t inv_sqrt_hd_q30,
                         const int64_t *table, int64_t log2e_q30, int64_t *out,
                         const int64_t *sel, int64_t n_sel, int64_t *probs, int64_t *scratch,
                         int nthreads);

/* AVX2 versions of poai_silu_mul and poai_attention_batch (ext/poai_ops_avx2.c),
 * bit-identical; call only where poai_cpu_has_avx2().  The attention
 * allocates its own scratch and returns 2 if it cannot (nothing computed). */
void poai_silu_mul_avx2(const int64_t *gate, const int64_t *up, int64_t n, const int64_t *table,
                        int64_t log2e_q30, int64_t *out, int nthreads);
int poai_attention_batch_avx2(const int64_t *q, const int64_t *k, const int64_t *v, int64_t B,
                              int64_t T, int64_t H, int64_t Hkv, int64_t hd,
                              int64_t inv_sqrt_hd_q30, const int64_t *table, int64_t log2e_q30,
                              int64_t *out, const int64_t *sel, int64_t n_sel, int64_t *probs,
                              int nthreads);

#endif
