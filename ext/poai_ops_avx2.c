/*
 * poai_ops_avx2.c -- SwiGLU and attention with AVX2 (target attributes),
 * bit-identical to poai_silu_mul / poai_attention_batch in poai_kernels.c
 * (docs/ENGINE.md "exp, sigmoid, SiLU", "Attention", "Reciprocal").  Used
 * only where poai_cpu_has_avx2() (every AVX-512 CPU has it too).
 *
 * Four int64 lanes per ymm.  The products are vpmuldq / vpmuludq (exact
 * 32 x 32 -> 64): every operand below is proven to fit 32 bits where it is
 * multiplied (the bound is written at each product).  AVX2 has no 64-bit
 * arithmetic right shift; for a value x with x + 2^(s-1) in [-2^62, 2^62):
 *
 *     rshift_round(x, s) = ((x + 2^(s-1) + 2^62) >>> s) - 2^(62-s)
 *
 * (>>> logical): adding 2^62 makes the operand non-negative, and a logical
 * shift of a non-negative number is the floor division the rule asks for.
 */
#include "poai_kernels.h"
#include "poai_packed.h"

#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* The scalar kernel with its scratch allocated here (head dims the vector
 * path does not cover). */
static int attention_scalar(const int64_t *q, const int64_t *k, const int64_t *v, int64_t B,
                            int64_t T, int64_t H, int64_t Hkv, int64_t hd,
                            int64_t inv_sqrt_hd_q30, const int64_t *table, int64_t log2e_q30,
                            int64_t *out, const int64_t *sel, int64_t n_sel, int64_t *probs,
                            int nthreads) {
    int64_t *scratch = malloc((size_t)(nthreads * (2 * T + hd)) * sizeof(int64_t));
    if (!scratch) return 2;
    int status = poai_attention_batch(q, k, v, B, T, H, Hkv, hd, inv_sqrt_hd_q30, table, log2e_q30,
                                      out, sel, n_sel, probs, scratch, nthreads);
    free(scratch);
    return status;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define T256 __attribute__((target("avx2")))
#define INLINE __attribute__((always_inline)) inline
#define B62 ((int64_t)1 << 62)

/* rshift_round(x, s), 1 <= s <= 62, x + 2^(s-1) in [-2^62, 2^62) */
T256 static INLINE __m256i rsr(__m256i x, int s) {
    __m256i biased = _mm256_add_epi64(x, _mm256_set1_epi64x(B62 + ((int64_t)1 << (s - 1))));
    return _mm256_sub_epi64(_mm256_srl_epi64(biased, _mm_cvtsi32_si128(s)),
                            _mm256_set1_epi64x((int64_t)1 << (62 - s)));
}

T256 static INLINE __m256i max64(__m256i a, __m256i b) {
    return _mm256_blendv_epi8(a, b, _mm256_cmpgt_epi64(b, a));
}

/* poai_exp_q30 on 4 lanes, z <= 0 */
T256 static INLINE __m256i exp4(__m256i z, const int64_t *table, __m256i log2e) {
    const __m256i clamp = _mm256_set1_epi64x(-((int64_t)64 << 16));
    __m256i zc = max64(z, clamp);
    /* w = rshift_round(zc * L, 30): zc in [-2^22, 0], L < 2^31, |zc * L| < 2^53 */
    __m256i w = rsr(_mm256_mul_epi32(zc, log2e), 30);
    /* n = ceil(-w / 2^16), -w >= 0; f = w + n 2^16 in [0, 2^16) */
    __m256i n = _mm256_srli_epi64(
        _mm256_add_epi64(_mm256_sub_epi64(_mm256_setzero_si256(), w), _mm256_set1_epi64x(65535)), 16);
    __m256i f = _mm256_add_epi64(w, _mm256_slli_epi64(n, 16));
    __m256i idx = _mm256_srli_epi64(f, 6);
    __m256i frac = _mm256_and_si256(f, _mm256_set1_epi64x(63));
    __m256i lo = _mm256_i64gather_epi64((const long long *)table, idx, 8);
    __m256i hi = _mm256_i64gather_epi64((const long long *)(table + 1), idx, 8);
    /* (hi - lo) * frac: 0 <= hi - lo < 2^31, frac < 64: non-negative, < 2^37 */
    __m256i dv = _mm256_mul_epu32(_mm256_sub_epi64(hi, lo), frac);
    __m256i v = _mm256_add_epi64(lo, _mm256_srli_epi64(_mm256_add_epi64(dv, _mm256_set1_epi64x(32)), 6));
    /* rshift_round(v, min(n, 62)), v in [2^30, 2^31]: bias (2^s) >> 1 is 0 for s = 0 */
    __m256i c62 = _mm256_set1_epi64x(62);
    __m256i sh = _mm256_blendv_epi8(n, c62, _mm256_cmpgt_epi64(n, c62));
    __m256i half = _mm256_srli_epi64(_mm256_sllv_epi64(_mm256_set1_epi64x(1), sh), 1);
    return _mm256_srlv_epi64(_mm256_add_epi64(v, half), sh);
}

/* poai_recip_q30 on 4 lanes, d in [2^30, 2^31] */
T256 static INLINE __m256i recip4(__m256i d, const int64_t *rt) {
    __m256i idx = _mm256_srli_epi64(_mm256_sub_epi64(d, _mm256_set1_epi64x((int64_t)1 << 30)), 22);
    __m256i r = _mm256_i64gather_epi64((const long long *)rt, idx, 8);
    const __m256i one60 = _mm256_set1_epi64x((int64_t)1 << 60);
    for (int step = 0; step < 2; step++) {
        /* d < 2^32 and r <= 2^30 (unsigned 32-bit): d * r < 2^62; |err| < 2^52 */
        __m256i err = _mm256_sub_epi64(one60, _mm256_mul_epu32(d, r));
        __m256i e1 = rsr(err, 29);                                  /* |e'| < 2^23 */
        r = _mm256_add_epi64(r, rsr(_mm256_mul_epi32(r, e1), 31)); /* |r e'| < 2^53 */
    }
    return r;
}

T256 static void silu_span(const int64_t *gate, const int64_t *up, int64_t lo, int64_t hi,
                           const int64_t *table, int64_t log2e_q30, int64_t *out) {
    const int64_t *rt = poai_recip_table();
    const __m256i log2e = _mm256_set1_epi64x(log2e_q30), zero = _mm256_setzero_si256();
    const __m256i one30 = _mm256_set1_epi64x((int64_t)1 << 30);
    int64_t i = lo;
    for (; i + 4 <= hi; i += 4) {
        __m256i g = _mm256_loadu_si256((const __m256i *)(gate + i));
        __m256i u = _mm256_loadu_si256((const __m256i *)(up + i));
        __m256i neg = _mm256_cmpgt_epi64(zero, g);
        __m256i absg = _mm256_blendv_epi8(g, _mm256_sub_epi64(zero, g), neg);
        __m256i e = exp4(_mm256_sub_epi64(zero, absg), table, log2e);
        __m256i pos = recip4(_mm256_add_epi64(one30, e), rt);
        __m256i sig = _mm256_blendv_epi8(pos, _mm256_sub_epi64(one30, pos), neg);
        /* |g| < 2^31 (checked by the caller), sig <= 2^30: |g sig| < 2^61 */
        __m256i silu = rsr(_mm256_mul_epi32(g, sig), 30);
        /* |silu| <= |g| < 2^31, |u| < 2^31: |silu u| < 2^62 - 2^32 */
        _mm256_storeu_si256((__m256i *)(out + i), rsr(_mm256_mul_epi32(silu, u), 16));
    }
    if (i < hi) poai_silu_mul(gate + i, up + i, hi - i, table, log2e_q30, out + i, 1);
}

void poai_silu_mul_avx2(const int64_t *gate, const int64_t *up, int64_t n, const int64_t *table,
                        int64_t log2e_q30, int64_t *out, int nthreads) {
    /* elements are independent: any split gives the same bits */
    int64_t chunk = 4096;
    int64_t nchunks = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) num_threads(nthreads) if (nthreads > 1 && nchunks > 1)
    for (int64_t c = 0; c < nchunks; c++) {
        int64_t lo = c * chunk, hi = lo + chunk < n ? lo + chunk : n;
        silu_span(gate, up, lo, hi, table, log2e_q30, out);
    }
}

/* Head kv's keys of one sequence, transposed to kt [hd][Tp] (zero padded). */
static void transpose_keys(const int64_t *k, int64_t T, int64_t Hkv, int64_t hd, int64_t kv,
                           int64_t *kt) {
    const int64_t Tp = (T + 3) & ~(int64_t)3;
    for (int64_t d = 0; d < hd; d++) {
        for (int64_t j = 0; j < T; j++) kt[d * Tp + j] = k[(j * Hkv + kv) * hd + d];
        for (int64_t j = T; j < Tp; j++) kt[d * Tp + j] = 0;
    }
}

/* One (sequence, query head) of causal attention; kt [hd][Tp] holds the
 * head's kv keys transposed (transpose_keys), score and p [Tp] scratch.  Returns 1 if a score
 * leaves |s16| < 2^31 (as the scalar kernel). */
T256 static int head_avx2(const int64_t *q, const int64_t *v, int64_t T,
                          int64_t H, int64_t Hkv, int64_t hd, int64_t h, int64_t c30,
                          const int64_t *table, int64_t log2e_q30, int64_t *out,
                          int64_t *probs_slot, const int64_t *kt, int64_t *score, int64_t *p) {
    const int64_t kv = h / (H / Hkv);
    const int64_t Tp = (T + 3) & ~(int64_t)3;
    const __m256i log2e = _mm256_set1_epi64x(log2e_q30), cv = _mm256_set1_epi64x(c30);
    const __m256i lim = _mm256_set1_epi64x((int64_t)1 << 31);
    const __m256i nlim = _mm256_set1_epi64x(-((int64_t)1 << 31));
    for (int64_t i = 0; i < T; i++) {
        const int64_t *qi = q + (i * H + h) * hd;
        int64_t nj = i + 1, nv = (nj + 3) & ~(int64_t)3;
        __m256i bad = _mm256_setzero_si256();
        const __m256i diag = _mm256_set1_epi64x(i);
        for (int64_t j = 0; j < nv; j += 4) {
            __m256i raw = _mm256_setzero_si256();
            /* |q|, |k| < 2^24 (checked): each product < 2^48, the sum < 2^48 hd */
            for (int64_t d = 0; d < hd; d++)
                raw = _mm256_add_epi64(raw, _mm256_mul_epi32(_mm256_set1_epi64x(qi[d]),
                                                             _mm256_loadu_si256((const __m256i *)(kt + d * Tp + j))));
            __m256i s16 = rsr(raw, 16);
            /* |s16| >= 2^31 on a lane j <= i (lanes past the diagonal are not scores) */
            __m256i out_of_range = _mm256_or_si256(_mm256_cmpgt_epi64(s16, _mm256_sub_epi64(lim, _mm256_set1_epi64x(1))),
                                                   _mm256_cmpgt_epi64(_mm256_add_epi64(nlim, _mm256_set1_epi64x(1)), s16));
            __m256i lane = _mm256_add_epi64(_mm256_set1_epi64x(j), _mm256_setr_epi64x(0, 1, 2, 3));
            bad = _mm256_or_si256(bad, _mm256_andnot_si256(_mm256_cmpgt_epi64(lane, diag), out_of_range));
            /* |s16| < 2^31, C < 2^31: |s16 C| < 2^62 */
            __m256i sc = rsr(_mm256_mul_epi32(s16, cv), 30);
            _mm256_storeu_si256((__m256i *)(score + j), sc);
        }
        if (!_mm256_testz_si256(bad, bad)) return 1;
        int64_t m = INT64_MIN;
        for (int64_t j = 0; j < nj; j++) m = score[j] > m ? score[j] : m;
        /* lanes past the diagonal get z = 0 (a valid exp input); their p is zeroed */
        for (int64_t j = nj; j < nv; j++) score[j] = m;
        __m256i mv = _mm256_set1_epi64x(m);
        __m256i tot = _mm256_setzero_si256();
        for (int64_t j = 0; j < nv; j += 4) {
            __m256i e = exp4(_mm256_sub_epi64(_mm256_loadu_si256((const __m256i *)(score + j)), mv),
                             table, log2e);
            _mm256_storeu_si256((__m256i *)(p + j), e);
        }
        for (int64_t j = nj; j < nv; j++) p[j] = 0;
        {
            for (int64_t j = 0; j < nv; j += 4)
                tot = _mm256_add_epi64(tot, _mm256_loadu_si256((const __m256i *)(p + j)));
        }
        int64_t tmp[4];
        _mm256_storeu_si256((__m256i *)tmp, tot);
        int64_t total = tmp[0] + tmp[1] + tmp[2] + tmp[3]; /* in [2^30, T 2^30] */
        int sh;
        int64_t rt = poai_recip_q30(poai_recip_normalize(total, &sh));
        /* p = rshift_round(e * rt, 44 + sh): e <= 2^30, rt <= 2^30, non-negative */
        __m256i rv = _mm256_set1_epi64x(rt);
        __m128i cnt = _mm_cvtsi32_si128(44 + sh);
        __m256i pb = _mm256_set1_epi64x((int64_t)1 << (43 + sh));
        for (int64_t j = 0; j < nv; j += 4) {
            __m256i e = _mm256_loadu_si256((const __m256i *)(p + j));
            _mm256_storeu_si256((__m256i *)(p + j),
                                _mm256_srl_epi64(_mm256_add_epi64(_mm256_mul_epu32(e, rv), pb), cnt));
        }
        /* out = rshift_round(sum_j p_j v_j, 16): p <= 2^16, |v| < 2^31: |sum| < T 2^47 */
        int64_t *oi = out + (i * H + h) * hd;
        for (int64_t d0 = 0; d0 < hd; d0 += 16) {
            __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
            for (int64_t j = 0; j < nj; j++) {
                const int64_t *vj = v + (j * Hkv + kv) * hd + d0;
                __m256i pj = _mm256_set1_epi64x(p[j]);
                a0 = _mm256_add_epi64(a0, _mm256_mul_epi32(pj, _mm256_loadu_si256((const __m256i *)vj)));
                a1 = _mm256_add_epi64(a1, _mm256_mul_epi32(pj, _mm256_loadu_si256((const __m256i *)(vj + 4))));
                a2 = _mm256_add_epi64(a2, _mm256_mul_epi32(pj, _mm256_loadu_si256((const __m256i *)(vj + 8))));
                a3 = _mm256_add_epi64(a3, _mm256_mul_epi32(pj, _mm256_loadu_si256((const __m256i *)(vj + 12))));
            }
            _mm256_storeu_si256((__m256i *)(oi + d0), rsr(a0, 16));
            _mm256_storeu_si256((__m256i *)(oi + d0 + 4), rsr(a1, 16));
            _mm256_storeu_si256((__m256i *)(oi + d0 + 8), rsr(a2, 16));
            _mm256_storeu_si256((__m256i *)(oi + d0 + 12), rsr(a3, 16));
        }
        if (probs_slot)
            for (int64_t j = 0; j <= i; j++) probs_slot[i * T + j] = p[j];
    }
    return 0;
}

int poai_attention_batch_avx2(const int64_t *q, const int64_t *k, const int64_t *v, int64_t B,
                              int64_t T, int64_t H, int64_t Hkv, int64_t hd,
                              int64_t inv_sqrt_hd_q30, const int64_t *table, int64_t log2e_q30,
                              int64_t *out, const int64_t *sel, int64_t n_sel, int64_t *probs,
                              int nthreads) {
    if (hd % 16)
        return attention_scalar(q, k, v, B, T, H, Hkv, hd, inv_sqrt_hd_q30, table,
                                          log2e_q30, out, sel, n_sel, probs, nthreads);
    int status = 0;
    const int64_t Tp = (T + 3) & ~(int64_t)3;
    if (probs) memset(probs, 0, (size_t)(B * n_sel * T * T) * sizeof(int64_t));
#pragma omp parallel num_threads(nthreads) if (nthreads > 1) reduction(|:status)
    {
        /* per thread: transposed keys [hd][Tp], scores and probabilities [Tp] */
        int64_t *kt = malloc((size_t)(hd * Tp + 2 * Tp) * sizeof(int64_t));
        if (!kt) {
            status |= 2;
        } else {
            /* one task per (sequence, kv head): its keys are transposed once
             * for the group of query heads that read them */
            const int64_t group = H / Hkv;
#pragma omp for schedule(dynamic, 1)
            for (int64_t task = 0; task < B * Hkv; task++) {
                int64_t b = task / Hkv, kv = task % Hkv;
                transpose_keys(k + b * T * Hkv * hd, T, Hkv, hd, kv, kt);
                for (int64_t h = kv * group; h < (kv + 1) * group; h++) {
                    int64_t *slot = NULL;
                    for (int64_t s = 0; s < n_sel; s++)
                        if (sel[s] == h) slot = probs + (b * n_sel + s) * T * T;
                    status |= head_avx2(q + b * T * H * hd, v + b * T * Hkv * hd, T, H, Hkv, hd,
                                        h, inv_sqrt_hd_q30, table, log2e_q30,
                                        out + b * T * H * hd, slot, kt, kt + hd * Tp,
                                        kt + hd * Tp + Tp);
                }
            }
            free(kt);
        }
    }
    return status;
}

/* --- norms, RoPE, range checks ---------------------------------------------- */

T256 static void norm_row_avx2(const int64_t *x, int64_t n, const int64_t *g, int64_t eps_q32,
                               int64_t *y) {
    const __m256i zero = _mm256_setzero_si256();
    __m256i amax = zero;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(x + i));
        __m256i a = _mm256_blendv_epi8(v, _mm256_sub_epi64(zero, v), _mm256_cmpgt_epi64(zero, v));
        amax = max64(amax, a);
    }
    int64_t tmp[4], am = 0;
    _mm256_storeu_si256((__m256i *)tmp, amax);
    for (int u = 0; u < 4; u++) am = tmp[u] > am ? tmp[u] : am;
    for (; i < n; i++) {
        int64_t a = x[i] < 0 ? -x[i] : x[i];
        am = a > am ? a : am;
    }
    int t = am ? 64 - __builtin_clzll((uint64_t)am) - 24 : -24;
    if (t < 0) t = 0;
    /* x' = rshift_round(x, t), |x'| <= 2^24: x'^2 <= 2^48 (vpmuldq), sum < 2^62 */
    __m256i ss = zero;
    for (i = 0; i + 4 <= n; i += 4) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(x + i));
        __m256i xs = t ? rsr(v, t) : v;
        ss = _mm256_add_epi64(ss, _mm256_mul_epi32(xs, xs));
    }
    _mm256_storeu_si256((__m256i *)tmp, ss);
    int64_t sumsq = tmp[0] + tmp[1] + tmp[2] + tmp[3];
    for (; i < n; i++) {
        int64_t xs = t ? (x[i] + ((int64_t)1 << (t - 1))) >> t : x[i];
        sumsq += xs * xs;
    }
    int shift;
    int64_t mult = poai_norm_multiplier(sumsq, n, t, eps_q32, &shift);
    const __m256i mv = _mm256_set1_epi64x(mult);
    for (i = 0; i + 4 <= n; i += 4) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(x + i));
        /* |x| < 2^31, M <= 2^30: |x M| < 2^61; |t1| <= |x|, |g| < 2^31: |t1 g| < 2^62 */
        __m256i t1 = rsr(_mm256_mul_epi32(v, mv), 30);
        __m256i gv = _mm256_loadu_si256((const __m256i *)(g + i));
        _mm256_storeu_si256((__m256i *)(y + i), rsr(_mm256_mul_epi32(t1, gv), shift));
    }
    for (; i < n; i++) {
        int64_t t1 = (x[i] * mult + ((int64_t)1 << 29)) >> 30;
        y[i] = (t1 * g[i] + ((int64_t)1 << (shift - 1))) >> shift;
    }
}

void poai_rmsnorm_avx2(const int64_t *x, int64_t T, int64_t n, const int64_t *g,
                       int64_t eps_q32, int64_t *y) {
    for (int64_t t = 0; t < T; t++) norm_row_avx2(x + t * n, n, g, eps_q32, y + t * n);
}

T256 void poai_rope_avx2(int64_t *x, int64_t T, int64_t H, int64_t hd, int64_t n_rot,
                         const int64_t *cos_t, const int64_t *sin_t) {
    int64_t half = n_rot / 2;
    if (half % 2) {
        poai_rope(x, T, H, hd, n_rot, cos_t, sin_t);
        return;
    }
    /* odd lanes add the swapped product, even lanes subtract it */
    const __m256i odd = _mm256_setr_epi64x(0, -1, 0, -1);
    for (int64_t t = 0; t < T; t++) {
        const int64_t *ct = cos_t + t * half, *st = sin_t + t * half;
        for (int64_t h = 0; h < H; h++) {
            int64_t *v = x + (t * H + h) * hd;
            for (int64_t i = 0; i < half; i += 2) {
                /* [a0 b0 a1 b1] with [c0 c0 c1 c1] and [s0 s0 s1 s1] */
                __m256i ab = _mm256_loadu_si256((const __m256i *)(v + 2 * i));
                __m256i c = _mm256_permute4x64_epi64(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(ct + i))), 0x50);
                __m256i s = _mm256_permute4x64_epi64(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(st + i))), 0x50);
                __m256i ba = _mm256_shuffle_epi32(ab, 0x4E);
                /* |a|, |b| < 2^31 (checked), |c|, |s| <= 2^30: products < 2^61, sums < 2^62 */
                __m256i p1 = _mm256_mul_epi32(ab, c), p2 = _mm256_mul_epi32(ba, s);
                __m256i r = _mm256_blendv_epi8(_mm256_sub_epi64(p1, p2), _mm256_add_epi64(p1, p2), odd);
                _mm256_storeu_si256((__m256i *)(v + 2 * i), rsr(r, 30));
            }
        }
    }
}

T256 static int in_range_avx2(const int64_t *x, int64_t n, int bits) {
    const __m256i hi = _mm256_set1_epi64x(((int64_t)1 << bits) - 1);
    const __m256i lo = _mm256_set1_epi64x(-((int64_t)1 << bits) + 1);
    __m256i bad = _mm256_setzero_si256();
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(x + i));
        bad = _mm256_or_si256(bad, _mm256_or_si256(_mm256_cmpgt_epi64(v, hi), _mm256_cmpgt_epi64(lo, v)));
    }
    int ok = _mm256_testz_si256(bad, bad);
    for (; i < n; i++) ok &= x[i] < ((int64_t)1 << bits) && x[i] > -((int64_t)1 << bits);
    return ok;
}

T256 static void add_avx2(int64_t *x, const int64_t *y, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        _mm256_storeu_si256((__m256i *)(x + i), _mm256_add_epi64(_mm256_loadu_si256((const __m256i *)(x + i)),
                                                                 _mm256_loadu_si256((const __m256i *)(y + i))));
    for (; i < n; i++) x[i] += y[i];
}

int poai_in_range(const int64_t *x, int64_t n, int bits) {
    if (poai_cpu_has_avx2()) return in_range_avx2(x, n, bits);
    int64_t bad = 0, lim = (int64_t)1 << bits;
    for (int64_t i = 0; i < n; i++) bad |= (x[i] >= lim) | (x[i] <= -lim);
    return !bad;
}

void poai_add_inplace(int64_t *x, const int64_t *y, int64_t n) {
    if (poai_cpu_has_avx2()) {
        add_avx2(x, y, n);
        return;
    }
    for (int64_t i = 0; i < n; i++) x[i] += y[i];
}
#else
void poai_silu_mul_avx2(const int64_t *gate, const int64_t *up, int64_t n, const int64_t *table,
                        int64_t log2e_q30, int64_t *out, int nthreads) {
    poai_silu_mul(gate, up, n, table, log2e_q30, out, nthreads);
}

int poai_attention_batch_avx2(const int64_t *q, const int64_t *k, const int64_t *v, int64_t B,
                              int64_t T, int64_t H, int64_t Hkv, int64_t hd,
                              int64_t inv_sqrt_hd_q30, const int64_t *table, int64_t log2e_q30,
                              int64_t *out, const int64_t *sel, int64_t n_sel, int64_t *probs,
                              int nthreads) {
    return attention_scalar(q, k, v, B, T, H, Hkv, hd, inv_sqrt_hd_q30, table,
                                      log2e_q30, out, sel, n_sel, probs, nthreads);
}

void poai_rmsnorm_avx2(const int64_t *x, int64_t T, int64_t n, const int64_t *g,
                       int64_t eps_q32, int64_t *y) {
    poai_rmsnorm(x, T, n, g, eps_q32, y);
}

void poai_rope_avx2(int64_t *x, int64_t T, int64_t H, int64_t hd, int64_t n_rot,
                    const int64_t *cos_t, const int64_t *sin_t) {
    poai_rope(x, T, H, hd, n_rot, cos_t, sin_t);
}

int poai_in_range(const int64_t *x, int64_t n, int bits) {
    int64_t bad = 0, lim = (int64_t)1 << bits;
    for (int64_t i = 0; i < n; i++) bad |= (x[i] >= lim) | (x[i] <= -lim);
    return !bad;
}

void poai_add_inplace(int64_t *x, const int64_t *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] += y[i];
}
#endif
