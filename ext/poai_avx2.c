/*
 * poai_avx2.c -- the packed matrix product with AVX2, enabled per function
 * by target attributes; used only when poai_cpu_has_avx2().  Bit-identical
 * to poai_matmul_packed_generic (see poai_packed.h):
 *
 *   the 16 lanes of a (row set, group) are two ymm halves of 8 int32;
 *   vpmaddwd multiplies int16 pairs (int8 weights sign-extended, or 4-bit
 *   weights zero-extended then split by AND 0x0F / a 4-bit shift) and adds
 *   each pair into one lane, no overflow and no saturation (bounds at
 *   rowset_nt).  The int64 epilogue uses vpmuldq (exact 32x32->64 products)
 *   and the exact left shift vpsllvq by s = e - B in [0, 10] (protocol 4: no
 *   per-block rounding).
 *
 * Register blocking: a wide call takes 4 tokens; each unpacked weight
 * vector serves all of them and, except for 16-wide weight blocks (two
 * partial sums per lane: the halves go in turn), each activation broadcast
 * serves both 8-lane halves.  The weight mode (plain scale, 16-wide scales,
 * block offset, or Q2_K's 16-wide scales and offsets, whose low-half
 * activation sums vpmaddwd against ones adds up in the loop) is a
 * compile-time parameter, so the epilogue has no branches.
 * Measured against the previous kernel (2 halves in turn, runtime mode
 * tests, 4 tokens), interleaved in one process on a 2-core Zen 3, 1 thread:
 * 1536x576 Q4_1 20.6 -> 31.7 GMAC/s, 576x1536 Q4_1 18.5 -> 26.2.
 */
#include "poai_packed.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define T256 __attribute__((target("avx2")))
#define INLINE __attribute__((always_inline)) inline

/* Activation pairs for the 8 lanes of half h (pattern period g). */
T256 static INLINE __m256i bcast(const int G, const int16_t *a, int h) {
    switch (G) {
    case 16: return _mm256_loadu_si256((const __m256i *)(a + 16 * h));
    case 8: return _mm256_loadu_si256((const __m256i *)a);
    case 4: return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)a));
    case 2: { int64_t v; __builtin_memcpy(&v, a, 8); return _mm256_set1_epi64x(v); }
    default: { int32_t v; __builtin_memcpy(&v, a, 4); return _mm256_set1_epi32(v); }
    }
}

T256 static INLINE __m256i load4_i32_as_i64(const int32_t *p) {
    return _mm256_cvtepi32_epi64(_mm_loadu_si128((const __m128i *)p));
}

/* Lanes 0-3 (hi = 0) or 4-7 (hi = 1) of v, sign-extended to int64. */
T256 static INLINE __m256i widen_half(__m256i v, int hi) {
    return _mm256_cvtepi32_epi64(hi ? _mm256_extracti128_si256(v, 1) : _mm256_castsi256_si128(v));
}

/* The weight modes: which per-lane weight data a matrix has. */
#define M_PLAIN 0 /* psc0 scales all 32 elements of a block */
#define M_S1 1    /* psc0 elements 0..15, psc1 elements 16..31 (16-wide blocks) */
#define M_MN 2    /* psc0 and the block offset pmn (times the block's asum) */
#define M_S1MN 3  /* 16-wide scales and offsets (Q2_K): psc0, psc1; pmn for elements
                   * 0..15 times asum_lo, pmn1 for 16..31 times asum - asum_lo */

/* One row set against NT tokens; G, NT, NIB (4-bit weights), MODE and HT
 * are constants after inlining.
 *
 * Per group, pairs k and k+8 of the pass's halves (both when HT, else one
 * at a time) are unpacked together (nibbles: one 16-byte load per half gives
 * pair k in the low and pair k+8 in the high nibbles, zero-extended to int16
 * by vpmovzxbw, then an AND or a 4-bit shift) and each token's activation
 * broadcast is used at once for the pass's halves: nothing is kept across k
 * (a broadcast kept for the second half was spilled to the stack).  The
 * accumulator arrays have a constant size: sized by NT they would be
 * variable-length arrays, which live in memory.  vpmaddwd adds each int16 pair into an
 * int32 lane, no saturation.  Except in M_S1 the 16 pairs of a block go into
 * one int32 accumulator per (token, half): |sum| <= 32 * 128 * 32767 < 2^27;
 * in M_S1 pairs 0-7 (x) and 8-15 (y) stay apart (each < 2^26), as their
 * scales differ.
 *
 * The int64 epilogue per (group, token): vpmuldq (exact 32 x 32 -> 64) by the
 * lane's scale(s), plus pmn * asum (|.| < 2^51), then the exact left shift
 * vpsllvq by s = e - B in [0, 10] (protocol 4: no per-block rounding); the
 * bounds of poai_matmul_packed_generic hold lane by lane. */
T256 static INLINE void rowset_nt(const int G, const int NT, const int NIB, const int MODE,
                                  const int HT, const uint8_t *w, int64_t ng,
                                  const int16_t *const *a, const int32_t *sc0,
                                  const int32_t *sc1, const int32_t *mn, const int32_t *mn1,
                                  const int64_t *const *s, const int64_t *const *asum,
                                  int64_t (*lanes)[16]) {
    const int S1 = MODE == M_S1 || MODE == M_S1MN, MN = MODE == M_MN, M16 = MODE == M_S1MN;
    const int NH = HT ? 2 : 1; /* halves per pass */
    __m256i acc[POAI_MAX_NT][4];
    const int64_t cb = NIB ? 256 : 512; /* bytes per (row set, group) chunk */
    for (int u = 0; u < NT; u++)
        for (int q = 0; q < 4; q++) acc[u][q] = _mm256_setzero_si256();
    for (int64_t gi = 0; gi < ng; gi++) {
        const uint8_t *wg = w + gi * cb;
        int64_t ao = gi * 32 * G, wl = gi * 16;
#pragma GCC unroll 1
        for (int h0 = 0; h0 < 2; h0 += NH) {
            /* z: M_S1MN's asum_lo, each lane's activations of pairs 0-7
             * summed by vpmaddwd against ones: |.| <= 16 * 32767 < 2^19 */
            __m256i x[POAI_MAX_NT][2], y[POAI_MAX_NT][2], z[POAI_MAX_NT][2];
            for (int u = 0; u < NT; u++)
                for (int j = 0; j < NH; j++) x[u][j] = y[u][j] = z[u][j] = _mm256_setzero_si256();
            for (int k = 0; k < 8; k++) {
                __m256i wlo[2], whi[2]; /* pair k (wlo) and pair k+8 (whi) of each half */
                for (int j = 0; j < NH; j++) {
                    const uint8_t *src = wg + k * 32 + 16 * (h0 + j);
                    if (NIB) {
                        __m256i b = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)src));
                        wlo[j] = _mm256_and_si256(b, _mm256_set1_epi16(0x0F));
                        whi[j] = _mm256_srli_epi16(b, 4);
                    } else {
                        wlo[j] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)src));
                        whi[j] = _mm256_cvtepi8_epi16(
                            _mm_loadu_si128((const __m128i *)(src + 256)));
                    }
                }
                for (int u = 0; u < NT; u++) {
                    const int16_t *au = a[u] + ao;
                    __m256i bl[2], bh[2];
                    bl[0] = bcast(G, au + k * 2 * G, h0);
                    bh[0] = bcast(G, au + (k + 8) * 2 * G, h0);
                    bl[1] = G == 16 ? bcast(G, au + k * 2 * G, 1) : bl[0];
                    bh[1] = G == 16 ? bcast(G, au + (k + 8) * 2 * G, 1) : bh[0];
                    for (int j = 0; j < NH; j++) {
                        x[u][j] = _mm256_add_epi32(x[u][j], _mm256_madd_epi16(wlo[j], bl[j]));
                        if (M16)
                            z[u][j] = _mm256_add_epi32(
                                z[u][j], _mm256_madd_epi16(_mm256_set1_epi16(1), bl[j]));
                        __m256i ph = _mm256_madd_epi16(whi[j], bh[j]);
                        if (S1) y[u][j] = _mm256_add_epi32(y[u][j], ph);
                        else x[u][j] = _mm256_add_epi32(x[u][j], ph);
                    }
                }
            }
            for (int q = 2 * h0; q < 2 * (h0 + NH); q++) { /* lanes 4q..4q+3 */
                int64_t l = wl + 4 * q;
                int j = (q >> 1) - h0;
                __m256i c0 = load4_i32_as_i64(sc0 + l);
                __m256i c1 = S1 ? load4_i32_as_i64(sc1 + l) : c0;
                __m256i m = MN || M16 ? load4_i32_as_i64(mn + l) : c0;
                __m256i m1 = M16 ? load4_i32_as_i64(mn1 + l) : c0;
                for (int u = 0; u < NT; u++) {
                    __m256i xi = x[u][j], yi = y[u][j];
                    __m256i inner = _mm256_mul_epi32(c0, widen_half(xi, q & 1));
                    if (S1) {
                        inner = _mm256_add_epi64(inner, _mm256_mul_epi32(c1, widen_half(yi, q & 1)));
                    }
                    if (MN)
                        inner = _mm256_add_epi64(inner, _mm256_mul_epi32(
                            m, _mm256_loadu_si256((const __m256i *)(asum[u] + l))));
                    if (M16) { /* asum_lo and asum - asum_lo: each < 2^19, so 32 bits */
                        __m256i lo = widen_half(z[u][j], q & 1);
                        __m256i hi = _mm256_sub_epi64(
                            _mm256_loadu_si256((const __m256i *)(asum[u] + l)), lo);
                        inner = _mm256_add_epi64(inner, _mm256_add_epi64(_mm256_mul_epi32(m, lo),
                                                                         _mm256_mul_epi32(m1, hi)));
                    }
                    acc[u][q] = _mm256_add_epi64(acc[u][q], _mm256_sllv_epi64(
                        inner, _mm256_loadu_si256((const __m256i *)(s[u] + l))));
                }
            }
        }
    }
    for (int u = 0; u < NT; u++)
        for (int q = 0; q < 4; q++) _mm256_storeu_si256((__m256i *)(lanes[u] + 4 * q), acc[u][q]);
}

/* Tokens per wide call, and whether both halves share a pass (HT): chosen
 * so the accumulators (NT x 2, or NT x 2 x 1 half for M_S1's two sums per
 * lane), the four weight vectors and the activation vectors fit the 16 ymm
 * registers (measured: 8 tokens or one half at a time is slower elsewhere). */
#define NT_WIDE 4
#define CFG_HT(MODE) ((MODE) != M_S1 && (MODE) != M_S1MN)

#define ROWSET_FN(G, NT, NIB, MODE, HT)                                                       \
    T256 static void rowset_##G##_##NT##_##NIB##_##MODE(                                     \
        const uint8_t *w, int64_t ng, const int16_t *const *a, const int32_t *sc0,           \
        const int32_t *sc1, const int32_t *mn, const int32_t *mn1, const int64_t *const *s,  \
        const int64_t *const *asum, int64_t (*lanes)[16]) {                                  \
        rowset_nt(G, NT, NIB, MODE, HT, w, ng, a, sc0, sc1, mn, mn1, s, asum, lanes);        \
    }
#define ROWSET_PAIR(G, NIB, MODE)                                                             \
    T256 static void rowset_##G##_W_##NIB##_##MODE(                                          \
        const uint8_t *w, int64_t ng, const int16_t *const *a, const int32_t *sc0,           \
        const int32_t *sc1, const int32_t *mn, const int32_t *mn1, const int64_t *const *s,  \
        const int64_t *const *asum, int64_t (*lanes)[16]) {                                  \
        rowset_nt(G, NT_WIDE, NIB, MODE, CFG_HT(MODE), w, ng, a, sc0, sc1, mn, mn1, s, asum,  \
                  lanes);                                                                    \
    }                                                                                        \
    ROWSET_FN(G, 1, NIB, MODE, 1)
#define ROWSET_MODES(G, NIB) ROWSET_PAIR(G, NIB, 0) ROWSET_PAIR(G, NIB, 1) ROWSET_PAIR(G, NIB, 2) \
    ROWSET_PAIR(G, NIB, 3)
#define ROWSET_FNS(G) ROWSET_MODES(G, 0) ROWSET_MODES(G, 1)
ROWSET_FNS(16) ROWSET_FNS(8) ROWSET_FNS(4) ROWSET_FNS(2) ROWSET_FNS(1)

/* (g, nibbles, mode) -> the inner kernels */
#define NAME(G, NT, NIB, MODE) rowset_##G##_##NT##_##NIB##_##MODE
#define SELM(G, NT, NIB) (mode == M_S1 ? NAME(G, NT, NIB, 1) : mode == M_MN ? NAME(G, NT, NIB, 2) \
                         : mode == M_S1MN ? NAME(G, NT, NIB, 3) : NAME(G, NT, NIB, 0))
#define SEL(G, NT) (nib ? SELM(G, NT, 1) : SELM(G, NT, 0))
#define PICK(G)                                                                               \
    case G:                                                                                  \
        *wide = SEL(G, W);                                                                   \
        *one = SEL(G, 1);                                                                    \
        break;
static void pick(int64_t g, int nib, int mode, poai_rowset_fn *wide, poai_rowset_fn *one) {
    switch (g) {
    PICK(16) PICK(8) PICK(4) PICK(2)
    default:
        *wide = SEL(1, W);
        *one = SEL(1, 1);
        break;
    }
}

POAI_PACKED_FN(poai_matmul_packed_avx2) {
    poai_rowset_fn wide, one;
    int mode = w->pmn1 ? M_S1MN : w->psc1 ? M_S1 : w->pmn ? M_MN : M_PLAIN;
    pick(poai_packed_group(w->K), w->wbits == 4, mode, &wide, &one);
    poai_packed_drive(wide, NT_WIDE, one, qa, s, ysh, asum, T, w, y, nthreads);
}
#else
POAI_PACKED_FN(poai_matmul_packed_avx2) {
    poai_matmul_packed_generic(qa, s, ysh, asum, T, w, y, nthreads);
}
#endif
