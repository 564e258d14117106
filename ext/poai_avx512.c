/*
 * poai_avx512.c -- the packed matrix product with AVX-512 (F, BW, DQ, VL)
 * and VNNI, enabled per function by target attributes (the rest of the
 * extension stays baseline x86-64); used only when poai_cpu_has_avx512().
 * Bit-identical to poai_matmul_packed_generic (see poai_packed.h):
 *
 *   one zmm lane per (row, block); for pair k, vpdpwssd adds
 *   w[2k]*a[2k] + w[2k+1]*a[2k+1] (int8 weights widened to int16) into the
 *   lane's int32 sum: |i0|, |i1| <= 16 * 128 * 32767 < 2^26, no overflow and
 *   no saturation (vpdpwssd, not vpdpwssds).  4-bit weights are unpacked
 *   exactly as in poai_avx2.c (AND 0x0F, a 4-bit vpsrlw for the high
 *   nibbles, then vpmovzxbw), one 32-byte row of the chunk per two pairs.  The epilogue is the definition's
 *   int64 arithmetic on 8 lanes at a time: vpmuldq for scale*isum and
 *   minv*asum (exact 32x32->64, |inner| < 2^47), then the exact left
 *   shift vpsllvq by s = e - B in [0, 10] (protocol 4: no per-block rounding).
 *   NT_WIDE tokens share each widened weight vector (2 x NT_WIDE independent chains).
 *   16-wide blocks with offsets (pmn1 set, Q2_K) also sum each lane's
 *   activations over pairs 0-7 (vpdpwssd against ones: asum_lo, |.| < 2^19)
 *   for the two half offsets pmn * asum_lo + pmn1 * (asum - asum_lo).
 */
#include "poai_packed.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define T512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")))
#define INLINE __attribute__((always_inline)) inline

/* inner * 2^s for 8 lanes (s in [0, 10], exact: vpsllvq), added to acc.  sc0, sc1 and mn are
 * the lanes' weight data already widened to int64 (once per group, shared by
 * the tile's tokens); sc1 / mn are used only when has_sc1 / has_mn. */
T512 static INLINE __m512i epilogue8(__m512i acc, __m256i i0, __m256i i1, __m512i sc0, __m512i sc1,
                                     __m512i mn, int has_sc1, int has_mn, const int64_t *s,
                                     const int64_t *asum, int has_mn1, __m512i mn1, __m256i alo) {
    __m512i inner;
    if (has_sc1) {
        inner = _mm512_add_epi64(_mm512_mul_epi32(sc0, _mm512_cvtepi32_epi64(i0)),
                                 _mm512_mul_epi32(sc1, _mm512_cvtepi32_epi64(i1)));
    } else {
        inner = _mm512_mul_epi32(sc0, _mm512_cvtepi32_epi64(_mm256_add_epi32(i0, i1))); /* < 2^27 */
    }
    if (has_mn1) { /* halves: asum_lo < 2^19 and asum - asum_lo < 2^19, each fits 32 bits */
        __m512i lo = _mm512_cvtepi32_epi64(alo);
        __m512i hi = _mm512_sub_epi64(_mm512_loadu_si512(asum), lo);
        inner = _mm512_add_epi64(inner, _mm512_add_epi64(_mm512_mul_epi32(mn, lo),
                                                         _mm512_mul_epi32(mn1, hi)));
    } else if (has_mn) /* asum < 2^20: its low 32 bits are its value */
        inner = _mm512_add_epi64(inner, _mm512_mul_epi32(mn, _mm512_loadu_si512(asum)));
    return _mm512_add_epi64(acc, _mm512_sllv_epi64(inner, _mm512_loadu_si512(s)));
}

/* 8 int32 weight values widened to int64 (zero when p is NULL). */
T512 static INLINE __m512i widen8(const int32_t *p) {
    return p ? _mm512_cvtepi32_epi64(_mm256_loadu_si256((const __m256i *)p)) : _mm512_setzero_si512();
}

/* The 2g activation values of pair k, repeated to fill 16 lanes. */
T512 static INLINE __m512i bcast(const int G, const int16_t *a) {
    switch (G) {
    case 16: return _mm512_loadu_si512(a);
    case 8: return _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)a));
    case 4: return _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)a));
    case 2: { int64_t v; __builtin_memcpy(&v, a, 8); return _mm512_set1_epi64(v); }
    default: { int32_t v; __builtin_memcpy(&v, a, 4); return _mm512_set1_epi32(v); }
    }
}

/* Pair k's weights of all 16 lanes as 32 int16 -- AVX2's wpair, 16 lanes at
 * once: wbits 8 widens 32 int8; wbits 4 (NIB) takes the chunk's byte row
 * k & 7 (32 bytes: lanes 0..15 x 2) and keeps its low (k < 8) or high
 * (k >= 8) nibbles, 0..15, zero-extended (vpmovzxbw). */
T512 static INLINE __m512i wpair(const int NIB, const uint8_t *wg, int k) {
    if (!NIB) return _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(wg + k * 32)));
    __m256i b = _mm256_loadu_si256((const __m256i *)(wg + (k & 7) * 32));
    __m256i n = k < 8 ? b : _mm256_srli_epi16(b, 4);
    return _mm512_cvtepu8_epi16(_mm256_and_si256(n, _mm256_set1_epi8(0x0F)));
}

/* One row set against NT (1..8) tokens; G, NT, NIB and MN16 (16-wide
 * offsets: pmn1 set) are constants after inlining (the per-token arrays
 * then live in registers). */
T512 static INLINE void rowset_nt(const int G, const int NT, const int NIB, const int MN16,
                                  const uint8_t *w, int64_t ng, const int16_t *const *a,
                                  const int32_t *sc0, const int32_t *sc1, const int32_t *mn,
                                  const int32_t *mn1, const int64_t *const *s,
                                  const int64_t *const *asum, int64_t (*lanes)[16]) {
    __m512i lo[POAI_MAX_NT], hi[POAI_MAX_NT];
    const int64_t cb = NIB ? 256 : 512; /* bytes per (row set, group) chunk */
#pragma GCC unroll 8
    for (int u = 0; u < NT; u++) lo[u] = hi[u] = _mm512_setzero_si512();
    for (int64_t gi = 0; gi < ng; gi++) {
        const uint8_t *wg = w + gi * cb;
        int64_t ao = gi * 32 * G;
        /* two partial sums per token (pairs 0-7 and 8-15): |each| < 2^26
         * (int8 weights) or < 2^23 (0..15) */
        __m512i x[POAI_MAX_NT], y[POAI_MAX_NT], z[POAI_MAX_NT];
#pragma GCC unroll 8
        for (int u = 0; u < NT; u++) x[u] = y[u] = z[u] = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) {
            __m512i wv = wpair(NIB, wg, k);
#pragma GCC unroll 8
            for (int u = 0; u < NT; u++) {
                __m512i av = bcast(G, a[u] + ao + k * 2 * G);
                x[u] = _mm512_dpwssd_epi32(x[u], wv, av);
                /* asum_lo: |.| <= 16 * 32767 < 2^19 */
                if (MN16) z[u] = _mm512_dpwssd_epi32(z[u], _mm512_set1_epi16(1), av);
            }
        }
#pragma GCC unroll 8
        for (int k = 8; k < 16; k++) {
            __m512i wv = wpair(NIB, wg, k);
#pragma GCC unroll 8
            for (int u = 0; u < NT; u++) y[u] = _mm512_dpwssd_epi32(y[u], wv, bcast(G, a[u] + ao + k * 2 * G));
        }
        int64_t wl = gi * 16, al = gi * 16;
        /* the group's weight data, widened once for all NT tokens */
        const int has_sc1 = sc1 != 0, has_mn = mn != 0;
        __m512i sc0l = widen8(sc0 + wl), sc0h = widen8(sc0 + wl + 8);
        __m512i sc1l = widen8(has_sc1 ? sc1 + wl : 0), sc1h = widen8(has_sc1 ? sc1 + wl + 8 : 0);
        __m512i mnl = widen8(has_mn ? mn + wl : 0), mnh = widen8(has_mn ? mn + wl + 8 : 0);
        __m512i mn1l = widen8(MN16 ? mn1 + wl : 0), mn1h = widen8(MN16 ? mn1 + wl + 8 : 0);
#pragma GCC unroll 8
        for (int u = 0; u < NT; u++) {
            lo[u] = epilogue8(lo[u], _mm512_castsi512_si256(x[u]), _mm512_castsi512_si256(y[u]),
                              sc0l, sc1l, mnl, has_sc1, has_mn, s[u] + al, asum[u] + al, MN16,
                              mn1l, _mm512_castsi512_si256(z[u]));
            hi[u] = epilogue8(hi[u], _mm512_extracti64x4_epi64(x[u], 1),
                              _mm512_extracti64x4_epi64(y[u], 1), sc0h, sc1h, mnh, has_sc1, has_mn,
                              s[u] + al + 8, asum[u] + al + 8, MN16, mn1h,
                              _mm512_extracti64x4_epi64(z[u], 1));
        }
    }
#pragma GCC unroll 8
    for (int u = 0; u < NT; u++) {
        _mm512_storeu_si512(lanes[u], lo[u]);
        _mm512_storeu_si512(lanes[u] + 8, hi[u]);
    }
}

#ifndef NT_WIDE
#define NT_WIDE 4   /* tokens per wide call (8 spills registers: measured slower) */
#endif
#define ROWSET_FN(G, NT, NIB, M) ROWSET_FN_(G, NT, NIB, M)
#define ROWSET_FN_(G, NT, NIB, M)                                                             \
    T512 static void rowset_##G##_##NT##_##NIB##_##M(                                        \
        const uint8_t *w, int64_t ng, const int16_t *const *a, const int32_t *sc0,           \
        const int32_t *sc1, const int32_t *mn, const int32_t *mn1, const int64_t *const *s,  \
        const int64_t *const *asum, int64_t (*lanes)[16]) {                                  \
        rowset_nt(G, NT, NIB, M, w, ng, a, sc0, sc1, mn, mn1, s, asum, lanes);               \
    }
#define ROWSET_FNS1(G, M) ROWSET_FN(G, NT_WIDE, 0, M) ROWSET_FN(G, 1, 0, M) \
    ROWSET_FN(G, NT_WIDE, 1, M) ROWSET_FN(G, 1, 1, M)
#define ROWSET_FNS(G) ROWSET_FNS1(G, 0) ROWSET_FNS1(G, 1)
ROWSET_FNS(16) ROWSET_FNS(8) ROWSET_FNS(4) ROWSET_FNS(2) ROWSET_FNS(1)

#define NAME_(G, NT, NIB, M) rowset_##G##_##NT##_##NIB##_##M
#define NAME(G, NT, NIB, M) NAME_(G, NT, NIB, M)
#define SEL(G, NT) (m16 ? (nib ? NAME(G, NT, 1, 1) : NAME(G, NT, 0, 1)) \
                        : (nib ? NAME(G, NT, 1, 0) : NAME(G, NT, 0, 0)))
/* (g, nibbles, 16-wide offsets) -> the inner kernels for that group size and weight width */
#define PICK(G)                                                                               \
    case G:                                                                                  \
        *wide = SEL(G, NT_WIDE);                                                             \
        *one = SEL(G, 1);                                                                    \
        break;
static void pick(int64_t g, int nib, int m16, poai_rowset_fn *wide, poai_rowset_fn *one) {
    switch (g) {
    PICK(16) PICK(8) PICK(4) PICK(2)
    default:
        *wide = SEL(1, NT_WIDE);
        *one = SEL(1, 1);
        break;
    }
}

POAI_PACKED_FN(poai_matmul_packed_avx512) {
    poai_rowset_fn wide, one;
    pick(poai_packed_group(w->K), w->wbits == 4, w->pmn1 != 0, &wide, &one);
    poai_packed_drive(wide, NT_WIDE, one, qa, s, ysh, asum, T, w, y, nthreads);
}
#else
POAI_PACKED_FN(poai_matmul_packed_avx512) {
    poai_matmul_packed_generic(qa, s, ysh, asum, T, w, y, nthreads);
}
#endif
