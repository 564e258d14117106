/*
 * poai_avx2.c -- the packed matrix product with AVX2, enabled per function
 * by target attributes; used only when poai_cpu_has_avx2().  Bit-identical
 * to poai_matmul_packed_generic (see poai_packed.h):
 *
 *   the 16 lanes of a (row set, group) are two ymm halves of 8 int32;
 *   vpmaddwd multiplies int16 pairs (int8 weights sign-extended, or 4-bit
 *   weights unpacked with AND 0x0F / a 4-bit shift and zero-extended) and
 *   adds each pair into one lane: |i0|, |i1| <= 16 * 128 * 32767 < 2^26, no
 *   overflow and no saturation.  The int64 epilogue uses vpmuldq (exact 32x32->64
 *   products) and the exact left shift vpsllvq by s = e - B in [0, 10]
 *   (protocol 4: no per-block rounding).
 *   Two tokens share each widened weight vector.
 *   16-wide blocks with offsets (pmn1 set, Q2_K) also sum each lane's
 *   activations over pairs 0-7 (vpmaddwd against ones: asum_lo, |.| < 2^19)
 *   for the two half offsets pmn * asum_lo + pmn1 * (asum - asum_lo).
 */
#include "poai_packed.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define T256 __attribute__((target("avx2")))
#define INLINE __attribute__((always_inline)) inline

/* inner * 2^s for 4 lanes (s in [0, 10], exact: vpsllvq), added to acc. */
T256 static INLINE __m256i term4(__m256i acc, __m256i inner, const int64_t *s) {
    return _mm256_add_epi64(acc, _mm256_sllv_epi64(inner, _mm256_loadu_si256((const __m256i *)s)));
}

/* A group half's weight data (8 lanes) widened to int64, as two 4-lane
 * vectors each; computed once and shared by the tile's tokens. */
typedef struct { __m256i s0[2], s1[2], mn[2], mn1[2]; int has_s1, has_mn, has_mn1; } wdata8;

T256 static INLINE __m256i widen4(const int32_t *p) {
    return p ? _mm256_cvtepi32_epi64(_mm_loadu_si128((const __m128i *)p)) : _mm256_setzero_si256();
}

T256 static INLINE wdata8 load_wdata8(const int32_t *sc0, const int32_t *sc1, const int32_t *mn,
                                      const int32_t *mn1) {
    wdata8 w;
    w.has_s1 = sc1 != 0;
    w.has_mn = mn != 0;
    w.has_mn1 = mn1 != 0;
    for (int h = 0; h < 2; h++) {
        w.s0[h] = widen4(sc0 + 4 * h);
        w.s1[h] = widen4(sc1 ? sc1 + 4 * h : 0);
        w.mn[h] = widen4(mn ? mn + 4 * h : 0);
        w.mn1[h] = widen4(mn1 ? mn1 + 4 * h : 0);
    }
    return w;
}

/* 8 lanes (i0/i1: the int32 sums of each block's two halves; alo: the
 * activation sums of elements 0..15, used only with has_mn1) into acc[0..1]. */
T256 static INLINE void epilogue8(__m256i acc[2], __m256i i0, __m256i i1, __m256i alo,
                                  const wdata8 *w, const int64_t *s, const int64_t *asum) {
    for (int h = 0; h < 2; h++) {
        __m128i a0 = h ? _mm256_extracti128_si256(i0, 1) : _mm256_castsi256_si128(i0);
        __m128i a1 = h ? _mm256_extracti128_si256(i1, 1) : _mm256_castsi256_si128(i1);
        __m256i inner;
        if (w->has_s1) {
            inner = _mm256_add_epi64(_mm256_mul_epi32(w->s0[h], _mm256_cvtepi32_epi64(a0)),
                                     _mm256_mul_epi32(w->s1[h], _mm256_cvtepi32_epi64(a1)));
        } else {
            inner = _mm256_mul_epi32(w->s0[h], _mm256_cvtepi32_epi64(_mm_add_epi32(a0, a1)));
        }
        if (w->has_mn1) { /* halves: asum_lo and asum - asum_lo, each < 2^19, fit 32 bits */
            __m128i l4 = h ? _mm256_extracti128_si256(alo, 1) : _mm256_castsi256_si128(alo);
            __m256i lo = _mm256_cvtepi32_epi64(l4);
            __m256i hi = _mm256_sub_epi64(_mm256_loadu_si256((const __m256i *)(asum + 4 * h)), lo);
            inner = _mm256_add_epi64(inner, _mm256_add_epi64(_mm256_mul_epi32(w->mn[h], lo),
                                                             _mm256_mul_epi32(w->mn1[h], hi)));
        } else if (w->has_mn)
            inner = _mm256_add_epi64(inner, _mm256_mul_epi32(
                w->mn[h], _mm256_loadu_si256((const __m256i *)(asum + 4 * h))));
        acc[h] = term4(acc[h], inner, s + 4 * h);
    }
}

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

/* Pair k's weights of lanes 8h..8h+7 as 16 int16: wbits 8 widens 16 int8;
 * wbits 4 (NIB) takes the chunk's byte row k & 7 and keeps its low (k < 8)
 * or high (k >= 8) nibbles, 0..15, zero-extended. */
T256 static INLINE __m256i wpair(const int NIB, const uint8_t *wg, int k, int h) {
    if (!NIB) return _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(wg + k * 32 + 16 * h)));
    __m128i b = _mm_loadu_si128((const __m128i *)(wg + (k & 7) * 32 + 16 * h));
    __m128i n = k < 8 ? b : _mm_srli_epi16(b, 4);
    return _mm256_cvtepu8_epi16(_mm_and_si128(n, _mm_set1_epi8(0x0F)));
}

/* One row set against NT (1, 2 or 4) tokens; G, NT, NIB, S1 (16-wide
 * weight blocks: psc1 set) and M16 (16-wide offsets: pmn1 set, so S1 too)
 * are constants after inlining.  Without S1 the
 * 16 pairs of a block go into one int32 accumulator per token (|sum| <=
 * 32 * 128 * 32767 < 2^27); with S1 pairs 0-7 and 8-15 stay apart (each
 * < 2^26), as their scales differ. */
T256 static INLINE void rowset_nt(const int G, const int NT, const int NIB, const int S1,
                                  const int M16, const uint8_t *w, int64_t ng,
                                  const int16_t *const *a, const int32_t *sc0, const int32_t *sc1,
                                  const int32_t *mn, const int32_t *mn1, const int64_t *const *s,
                                  const int64_t *const *asum, int64_t (*lanes)[16]) {
    __m256i acc[4][4];
    const int64_t cb = NIB ? 256 : 512; /* bytes per (row set, group) chunk */
    for (int u = 0; u < NT; u++)
        for (int q = 0; q < 4; q++) acc[u][q] = _mm256_setzero_si256();
    for (int64_t gi = 0; gi < ng; gi++) {
        const uint8_t *wg = w + gi * cb;
        int64_t ao = gi * 32 * G, wl = gi * 16;
        for (int h = 0; h < 2; h++) {
            __m256i x[4], y[4], z[4];
            for (int u = 0; u < NT; u++) x[u] = y[u] = z[u] = _mm256_setzero_si256();
#pragma GCC unroll 16
            for (int k = 0; k < 16; k++) {
                __m256i wv = wpair(NIB, wg, k, h);
#pragma GCC unroll 4
                for (int u = 0; u < NT; u++) {
                    __m256i av = bcast(G, a[u] + ao + k * 2 * G, h);
                    __m256i p = _mm256_madd_epi16(wv, av);
                    if (S1 && k >= 8) y[u] = _mm256_add_epi32(y[u], p);
                    else x[u] = _mm256_add_epi32(x[u], p);
                    /* asum_lo: |.| <= 16 * 32767 < 2^19 */
                    if (M16 && k < 8)
                        z[u] = _mm256_add_epi32(z[u], _mm256_madd_epi16(_mm256_set1_epi16(1), av));
                }
            }
            int64_t l8 = wl + 8 * h;
            wdata8 wd = load_wdata8(sc0 + l8, S1 ? sc1 + l8 : 0, mn ? mn + l8 : 0,
                                    M16 ? mn1 + l8 : 0);
#pragma GCC unroll 4
            for (int u = 0; u < NT; u++)
                epilogue8(&acc[u][2 * h], x[u], S1 ? y[u] : _mm256_setzero_si256(), z[u], &wd,
                          s[u] + l8, asum[u] + l8);
        }
    }
    for (int u = 0; u < NT; u++)
        for (int q = 0; q < 4; q++) _mm256_storeu_si256((__m256i *)(lanes[u] + 4 * q), acc[u][q]);
}

#ifndef NT_WIDE_AVX2
#define NT_WIDE_AVX2 4   /* tokens per wide call */
#endif
#define ROWSET_FN(G, NT, NIB, S1, M)                                                          \
    T256 static void rowset_##G##_##NT##_##NIB##_##S1##_##M(                                 \
        const uint8_t *w, int64_t ng, const int16_t *const *a, const int32_t *sc0,           \
        const int32_t *sc1, const int32_t *mn, const int32_t *mn1, const int64_t *const *s,  \
        const int64_t *const *asum, int64_t (*lanes)[16]) {                                  \
        rowset_nt(G, NT, NIB, S1, M, w, ng, a, sc0, sc1, mn, mn1, s, asum, lanes);           \
    }
/* 16-wide offsets exist only with 16-wide scales: M = 1 only with S1 = 1 */
#define ROWSET_FNS2(G, NT) ROWSET_FN(G, NT, 0, 0, 0) ROWSET_FN(G, NT, 1, 0, 0)               \
    ROWSET_FN(G, NT, 0, 1, 0) ROWSET_FN(G, NT, 1, 1, 0) ROWSET_FN(G, NT, 0, 1, 1)            \
    ROWSET_FN(G, NT, 1, 1, 1)
#define ROWSET_FNS1(G, NT) ROWSET_FNS2(G, NT)
#define ROWSET_FNS(G) ROWSET_FNS1(G, NT_WIDE_AVX2) ROWSET_FNS1(G, 1)
ROWSET_FNS(16) ROWSET_FNS(8) ROWSET_FNS(4) ROWSET_FNS(2) ROWSET_FNS(1)

/* (g, nibbles, 16-wide blocks, 16-wide offsets) -> the inner kernels */
#define NAME_(G, NT, NIB, S1, M) rowset_##G##_##NT##_##NIB##_##S1##_##M
#define NAME(G, NT, NIB, S1, M) NAME_(G, NT, NIB, S1, M)
#define SEL(G, NT) (m16 ? (nib ? NAME(G, NT, 1, 1, 1) : NAME(G, NT, 0, 1, 1))              \
                  : nib ? (s1 ? NAME(G, NT, 1, 1, 0) : NAME(G, NT, 1, 0, 0))               \
                        : (s1 ? NAME(G, NT, 0, 1, 0) : NAME(G, NT, 0, 0, 0)))
#define PICK(G)                                                                               \
    case G:                                                                                  \
        *wide = SEL(G, NT_WIDE_AVX2);                                                        \
        *one = SEL(G, 1);                                                                    \
        break;
static void pick(int64_t g, int nib, int s1, int m16, poai_rowset_fn *wide, poai_rowset_fn *one) {
    switch (g) {
    PICK(16) PICK(8) PICK(4) PICK(2)
    default:
        *wide = SEL(1, NT_WIDE_AVX2);
        *one = SEL(1, 1);
        break;
    }
}

POAI_PACKED_FN(poai_matmul_packed_avx2) {
    poai_rowset_fn wide, one;
    pick(poai_packed_group(w->K), w->wbits == 4, w->psc1 != 0, w->pmn1 != 0, &wide, &one);
    poai_packed_drive(wide, NT_WIDE_AVX2, one, qa, s, ysh, asum, T, w, y, nthreads);
}
#else
POAI_PACKED_FN(poai_matmul_packed_avx2) {
    poai_matmul_packed_generic(qa, s, ysh, asum, T, w, y, nthreads);
}
#endif
