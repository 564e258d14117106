/*
 * poai_avx2.c -- the packed matrix product with AVX2, enabled per function
 * by target attributes; used only when poai_cpu_has_avx2().  Bit-identical
 * to poai_matmul_packed_generic (see poai_packed.h):
 *
 *   the 16 lanes of a (row set, group) are two ymm halves of 8 int32;
 *   vpmaddwd multiplies int16 pairs (int8 weights widened) and adds each
 *   pair into one lane: |i0|, |i1| <= 16 * 128 * 32767 < 2^26, no overflow
 *   and no saturation.  The int64 epilogue uses vpmuldq (exact 32x32->64
 *   products) and an arithmetic right shift built from the logical vpsrlvq:
 *   sra(x, s) = srl(x ^ sg, s) ^ sg with sg = (x < 0 ? ~0 : 0).
 *   Two tokens share each widened weight vector.
 */
#include "poai_packed.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define T256 __attribute__((target("avx2")))
#define INLINE __attribute__((always_inline)) inline

/* rshift_round(inner, s) for 4 lanes (s in [0, 32]), added to acc. */
T256 static INLINE __m256i term4(__m256i acc, __m256i inner, const int64_t *s, const int64_t *rnd) {
    __m256i r = _mm256_add_epi64(inner, _mm256_loadu_si256((const __m256i *)rnd));
    __m256i sg = _mm256_cmpgt_epi64(_mm256_setzero_si256(), r);
    __m256i sv = _mm256_loadu_si256((const __m256i *)s);
    return _mm256_add_epi64(acc, _mm256_xor_si256(_mm256_srlv_epi64(_mm256_xor_si256(r, sg), sv), sg));
}

/* A group half's weight data (8 lanes) widened to int64, as two 4-lane
 * vectors each; computed once and shared by the tile's tokens. */
typedef struct { __m256i s0[2], s1[2], mn[2]; int has_s1, has_mn; } wdata8;

T256 static INLINE __m256i widen4(const int32_t *p) {
    return p ? _mm256_cvtepi32_epi64(_mm_loadu_si128((const __m128i *)p)) : _mm256_setzero_si256();
}

T256 static INLINE wdata8 load_wdata8(const int32_t *sc0, const int32_t *sc1, const int32_t *mn) {
    wdata8 w;
    w.has_s1 = sc1 != 0;
    w.has_mn = mn != 0;
    for (int h = 0; h < 2; h++) {
        w.s0[h] = widen4(sc0 + 4 * h);
        w.s1[h] = widen4(sc1 ? sc1 + 4 * h : 0);
        w.mn[h] = widen4(mn ? mn + 4 * h : 0);
    }
    return w;
}

/* 8 lanes (i0/i1: the int32 sums of each block's two halves) into acc[0..1]. */
T256 static INLINE void epilogue8(__m256i acc[2], __m256i i0, __m256i i1, const wdata8 *w,
                                  const int64_t *s, const int64_t *rnd, const int64_t *asum) {
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
        if (w->has_mn)
            inner = _mm256_add_epi64(inner, _mm256_mul_epi32(
                w->mn[h], _mm256_loadu_si256((const __m256i *)(asum + 4 * h))));
        acc[h] = term4(acc[h], inner, s + 4 * h, rnd + 4 * h);
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

T256 static INLINE void rowset_nt(const int G, const int NT, const int8_t *w, int64_t ng,
                                  const int16_t *const *a, const int32_t *sc0, const int32_t *sc1,
                                  const int32_t *mn,
                                  const int64_t *const *s, const int64_t *const *rnd,
                                  const int64_t *const *asum, int64_t (*lanes)[16]) {
    __m256i acc[2][4];
    for (int u = 0; u < NT; u++)
        for (int q = 0; q < 4; q++) acc[u][q] = _mm256_setzero_si256();
    for (int64_t gi = 0; gi < ng; gi++) {
        const int8_t *wg = w + gi * 512;
        int64_t ao = gi * 32 * G, wl = gi * 16;
        for (int h = 0; h < 2; h++) {
            __m256i x0 = _mm256_setzero_si256(), x1 = x0, y0 = x0, y1 = x0;
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++) {
                __m256i wv = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(wg + k * 32 + 16 * h)));
                x0 = _mm256_add_epi32(x0, _mm256_madd_epi16(wv, bcast(G, a[0] + ao + k * 2 * G, h)));
                if (NT > 1) x1 = _mm256_add_epi32(x1, _mm256_madd_epi16(wv, bcast(G, a[1] + ao + k * 2 * G, h)));
            }
#pragma GCC unroll 8
            for (int k = 8; k < 16; k++) {
                __m256i wv = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(wg + k * 32 + 16 * h)));
                y0 = _mm256_add_epi32(y0, _mm256_madd_epi16(wv, bcast(G, a[0] + ao + k * 2 * G, h)));
                if (NT > 1) y1 = _mm256_add_epi32(y1, _mm256_madd_epi16(wv, bcast(G, a[1] + ao + k * 2 * G, h)));
            }
            int64_t l8 = wl + 8 * h;
            wdata8 wd = load_wdata8(sc0 + l8, sc1 ? sc1 + l8 : 0, mn ? mn + l8 : 0);
            epilogue8(&acc[0][2 * h], x0, y0, &wd, s[0] + l8, rnd[0] + l8, asum[0] + l8);
            if (NT > 1)
                epilogue8(&acc[1][2 * h], x1, y1, &wd, s[1] + l8, rnd[1] + l8, asum[1] + l8);
        }
    }
    for (int u = 0; u < NT; u++)
        for (int q = 0; q < 4; q++) _mm256_storeu_si256((__m256i *)(lanes[u] + 4 * q), acc[u][q]);
}

#define ROWSET_FN(G, NT)                                                                      \
    T256 static void rowset_##G##_##NT(const int8_t *w, int64_t ng, const int16_t *const *a,  \
                                       const int32_t *sc0, const int32_t *sc1,                \
                                       const int32_t *mn,                                     \
                                       const int64_t *const *s, const int64_t *const *rnd,    \
                                       const int64_t *const *asum, int64_t (*lanes)[16]) {     \
        rowset_nt(G, NT, w, ng, a, sc0, sc1, mn, s, rnd, asum, lanes);                     \
    }
ROWSET_FN(16, 2) ROWSET_FN(16, 1) ROWSET_FN(8, 2) ROWSET_FN(8, 1) ROWSET_FN(4, 2)
ROWSET_FN(4, 1) ROWSET_FN(2, 2) ROWSET_FN(2, 1) ROWSET_FN(1, 2) ROWSET_FN(1, 1)

/* g -> the inner kernels for that group size */
static void pick(int64_t g, poai_rowset_fn *wide, poai_rowset_fn *one) {
    switch (g) {
    case 16: *wide = rowset_16_2; *one = rowset_16_1; break;
    case 8: *wide = rowset_8_2; *one = rowset_8_1; break;
    case 4: *wide = rowset_4_2; *one = rowset_4_1; break;
    case 2: *wide = rowset_2_2; *one = rowset_2_1; break;
    default: *wide = rowset_1_2; *one = rowset_1_1; break;
    }
}

POAI_PACKED_FN(poai_matmul_packed_avx2) {
    poai_rowset_fn wide, one;
    pick(poai_packed_group(K), &wide, &one);
    poai_packed_drive(wide, 2, one, qa, s, rnd, asum, T, K, wp, psc0, psc1, pmn, rows, y, nthreads);
}
#else
POAI_PACKED_FN(poai_matmul_packed_avx2) {
    poai_matmul_packed_generic(qa, s, rnd, asum, T, K, wp, psc0, psc1, pmn, rows, y, nthreads);
}
#endif
