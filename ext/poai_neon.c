/*
 * poai_neon.c -- the packed matrix product with AArch64 NEON (Advanced SIMD,
 * part of every AArch64 CPU, so no run-time test is needed); compiled only
 * under __aarch64__, elsewhere the symbol runs the generic kernel.
 * Bit-identical to poai_matmul_packed_generic (see poai_packed.h):
 *
 *   the 32 int16 products of one weight pair k (16 lanes x 2 elements) are
 *   four int16x8 vectors; vmlal_s16 / vmlal_high_s16 multiply them widening
 *   into eight int32x4 accumulators, one int32 per (lane, element e), and
 *   vpaddq_s32 adds each lane's two elements at the end of a half block
 *   (pairs 0-7, then pairs 8-15), giving the generic kernel's i0 and i1.
 *   poai's activations are int16, so SDOT (int8 x int8) does not apply.
 *   The int64 epilogue uses vmull_s32 / vmlal_s32 (exact 32 x 32 -> 64
 *   products) and the exact left shift vshlq_s64 by s = e - B in [0, 10]
 *   (protocol 4: no per-block rounding).  No saturating instruction anywhere.
 *
 * The weight mode (plain scale, 16-wide scales, block offset, or Q2_K's
 * 16-wide scales and offsets) and the group size are compile-time
 * parameters, as in poai_avx2.c.  A wide call takes 2 tokens: each widened
 * weight vector serves both.  Speed is unmeasured (no AArch64 hardware was
 * at hand); exactness is shown under qemu-user by tests/test_aarch64.py.
 */
#include "poai_packed.h"

#if defined(__aarch64__)
#include <arm_neon.h>

#define INLINE __attribute__((always_inline)) inline

/* The weight modes: which per-lane weight data a matrix has. */
#define M_PLAIN 0 /* psc0 scales all 32 elements of a block */
#define M_S1 1    /* psc0 elements 0..15, psc1 elements 16..31 (16-wide blocks) */
#define M_MN 2    /* psc0 and the block offset pmn (times the block's asum) */
#define M_S1MN 3  /* 16-wide scales and offsets (Q2_K): psc0, psc1; pmn for elements
                   * 0..15 times asum_lo, pmn1 for 16..31 times asum - asum_lo */

/* One token's activations of pair k broadcast to the 16 lanes, as four
 * int16x8 vectors: v[c] holds ab[k][8c .. 8c+7] with ab[k][j] =
 * a[k*2g + (j mod 2g)] (poai_packed.c's broadcast_group); a points at
 * a[k*2g].  The pattern period 2g is 32, 16, 8, 4 or 2 int16. */
static INLINE void bcast(const int G, const int16_t *a, int16x8_t v[4]) {
    switch (G) {
    case 16:
        for (int c = 0; c < 4; c++) v[c] = vld1q_s16(a + 8 * c);
        break;
    case 8:
        v[0] = v[2] = vld1q_s16(a);
        v[1] = v[3] = vld1q_s16(a + 8);
        break;
    case 4:
        v[0] = v[1] = v[2] = v[3] = vld1q_s16(a);
        break;
    case 2: {
        int16x4_t h = vld1_s16(a);
        v[0] = v[1] = v[2] = v[3] = vcombine_s16(h, h);
        break;
    }
    default: {
        int32_t p;
        __builtin_memcpy(&p, a, 4);
        v[0] = v[1] = v[2] = v[3] = vreinterpretq_s16_s32(vdupq_n_s32(p));
        break;
    }
    }
}

/* The 32 weights of pair k of one chunk (16 lanes x 2 elements), widened to
 * int16: int8 (wbits 8: bytes k*32 ..) or a nibble (wbits 4: pair k < 8 in
 * the low, pair k + 8 in the high nibble of bytes (k mod 8)*32 ..). */
static INLINE void load_pair(const int NIB, const uint8_t *chunk, int k, int16x8_t v[4]) {
    if (NIB) {
        const uint8_t *src = chunk + (k & 7) * 32;
        for (int c = 0; c < 2; c++) {
            uint8x16_t b = vld1q_u8(src + 16 * c);
            b = k < 8 ? vandq_u8(b, vdupq_n_u8(0x0F)) : vshrq_n_u8(b, 4);
            v[2 * c] = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(b)));
            v[2 * c + 1] = vreinterpretq_s16_u16(vmovl_high_u8(b));
        }
    } else {
        const int8_t *src = (const int8_t *)chunk + k * 32;
        for (int c = 0; c < 2; c++) {
            int8x16_t b = vld1q_s8(src + 16 * c);
            v[2 * c] = vmovl_s8(vget_low_s8(b));
            v[2 * c + 1] = vmovl_high_s8(b);
        }
    }
}

/* lanes 2c, 2c+1 (as int64x2) of int32x4 vector x: the low or high half */
#define LO32(x) vget_low_s32(x)
#define HI32(x) vget_high_s32(x)

/* One row set against NT tokens; G, NT, NIB (4-bit weights) and MODE are
 * constants after inlining.
 *
 * Per group and half block h (pairs 8h .. 8h+7), each token's eight int32x4
 * accumulators p[u][0..7] (element j = 4r .. 4r+3 of the 32 (lane, e)
 * positions in p[u][r]) take the eight pairs' products:
 * |.| <= 8 * 128 * 32767 < 2^25 (int8 weights; nibbles <= 15 are smaller).
 * vpaddq_s32 of p[u][2c], p[u][2c+1] gives lanes 4c .. 4c+3 of the half's
 * lane sums (i0 for h = 0, i1 for h = 1): |.| < 2^26.  In M_S1MN, z[u][c]
 * sums by vpadalq_s16 each lane's activations of pairs 0-7 (asum_lo):
 * |.| <= 16 * 32767 < 2^19.
 *
 * The int64 epilogue per (group, token, 4 lanes c): i0 + i1 (|.| < 2^27,
 * still int32) or, in M_S1 / M_S1MN, i0 and i1 apart, each times its
 * lane's scale by vmull_s32 (|.| < 2^31 * 2^27 = 2^58); plus pmn * asum
 * (asum narrowed to int32: |asum| < 2^20, so vmovn_s64 is exact; product
 * < 2^51) or, in M_S1MN, pmn * asum_lo + pmn1 * (asum - asum_lo) (each
 * < 2^31 * 2^20); then the exact left shift vshlq_s64 by s in [0, 10].  The
 * bounds of poai_matmul_packed_generic hold lane by lane: every partial sum
 * of a lane stays below 2^63. */
static INLINE void rowset_nt(const int G, const int NT, const int NIB, const int MODE,
                             const uint8_t *w, int64_t ng, const int16_t *const *a,
                             const int32_t *sc0, const int32_t *sc1, const int32_t *mn,
                             const int32_t *mn1, const int64_t *const *s,
                             const int64_t *const *asum, int64_t (*lanes)[16]) {
    const int S1 = MODE == M_S1 || MODE == M_S1MN, MN = MODE == M_MN, M16 = MODE == M_S1MN;
    const int64_t cb = NIB ? 256 : 512; /* bytes per (row set, group) chunk */
    int64x2_t acc[POAI_MAX_NT][8];      /* lanes 2r, 2r+1 in acc[u][r] */
    for (int u = 0; u < NT; u++)
        for (int r = 0; r < 8; r++) acc[u][r] = vdupq_n_s64(0);
    for (int64_t gi = 0; gi < ng; gi++) {
        const uint8_t *wg = w + gi * cb;
        int64_t ao = gi * 32 * G, wl = gi * 16;
        int32x4_t half[2][POAI_MAX_NT][4]; /* i0 (h = 0), i1 (h = 1), lanes 4c .. 4c+3 */
        int32x4_t z[POAI_MAX_NT][4];
        for (int u = 0; u < NT; u++)
            for (int c = 0; c < 4; c++) z[u][c] = vdupq_n_s32(0);
        for (int h = 0; h < 2; h++) {
            int32x4_t p[POAI_MAX_NT][8];
            for (int u = 0; u < NT; u++)
                for (int r = 0; r < 8; r++) p[u][r] = vdupq_n_s32(0);
            for (int k = 8 * h; k < 8 * h + 8; k++) {
                int16x8_t wv[4];
                load_pair(NIB, wg, k, wv);
                for (int u = 0; u < NT; u++) {
                    int16x8_t av[4];
                    bcast(G, a[u] + ao + k * 2 * G, av);
                    for (int c = 0; c < 4; c++) {
                        p[u][2 * c] = vmlal_s16(p[u][2 * c], vget_low_s16(wv[c]),
                                                vget_low_s16(av[c]));
                        p[u][2 * c + 1] = vmlal_high_s16(p[u][2 * c + 1], wv[c], av[c]);
                        if (M16 && h == 0) z[u][c] = vpadalq_s16(z[u][c], av[c]);
                    }
                }
            }
            for (int u = 0; u < NT; u++)
                for (int c = 0; c < 4; c++)
                    half[h][u][c] = vpaddq_s32(p[u][2 * c], p[u][2 * c + 1]);
        }
        for (int c = 0; c < 4; c++) { /* lanes 4c .. 4c+3 */
            int64_t l = wl + 4 * c;
            int32x4_t c0 = vld1q_s32(sc0 + l);
            int32x4_t c1 = S1 ? vld1q_s32(sc1 + l) : c0;
            int32x4_t m = MN || M16 ? vld1q_s32(mn + l) : c0;
            int32x4_t m1 = M16 ? vld1q_s32(mn1 + l) : c0;
            for (int u = 0; u < NT; u++) {
                int32x4_t i0 = half[0][u][c], i1 = half[1][u][c];
                int64x2_t lo, hi; /* inner of lanes 4c, 4c+1 (lo) and 4c+2, 4c+3 (hi) */
                if (S1) {
                    lo = vmlal_s32(vmull_s32(LO32(c0), LO32(i0)), LO32(c1), LO32(i1));
                    hi = vmlal_high_s32(vmull_high_s32(c0, i0), c1, i1);
                } else {
                    int32x4_t t = vaddq_s32(i0, i1);
                    lo = vmull_s32(LO32(c0), LO32(t));
                    hi = vmull_high_s32(c0, t);
                }
                if (MN || M16) {
                    /* the block's activation sum, |.| < 2^20: exact in int32 */
                    int32x4_t as = vcombine_s32(vmovn_s64(vld1q_s64(asum[u] + l)),
                                                vmovn_s64(vld1q_s64(asum[u] + l + 2)));
                    if (MN) {
                        lo = vmlal_s32(lo, LO32(m), LO32(as));
                        hi = vmlal_high_s32(hi, m, as);
                    } else { /* asum_lo and asum - asum_lo: each |.| < 2^20 */
                        int32x4_t zl = z[u][c], zh = vsubq_s32(as, zl);
                        lo = vmlal_s32(vmlal_s32(lo, LO32(m), LO32(zl)), LO32(m1), LO32(zh));
                        hi = vmlal_high_s32(vmlal_high_s32(hi, m, zl), m1, zh);
                    }
                }
                acc[u][2 * c] = vaddq_s64(acc[u][2 * c], vshlq_s64(lo, vld1q_s64(s[u] + l)));
                acc[u][2 * c + 1] =
                    vaddq_s64(acc[u][2 * c + 1], vshlq_s64(hi, vld1q_s64(s[u] + l + 2)));
            }
        }
    }
    for (int u = 0; u < NT; u++)
        for (int r = 0; r < 8; r++) vst1q_s64(lanes[u] + 2 * r, acc[u][r]);
}

#define NT_WIDE 2

#define ROWSET_FN(G, NT, NIB, MODE)                                                           \
    static void rowset_##G##_##NT##_##NIB##_##MODE(                                          \
        const uint8_t *w, int64_t ng, const int16_t *const *a, const int32_t *sc0,           \
        const int32_t *sc1, const int32_t *mn, const int32_t *mn1, const int64_t *const *s,  \
        const int64_t *const *asum, int64_t (*lanes)[16]) {                                  \
        rowset_nt(G, NT, NIB, MODE, w, ng, a, sc0, sc1, mn, mn1, s, asum, lanes);            \
    }
#define ROWSET_PAIR(G, NIB, MODE) ROWSET_FN(G, 2, NIB, MODE) ROWSET_FN(G, 1, NIB, MODE)
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
        *wide = SEL(G, 2);                                                                   \
        *one = SEL(G, 1);                                                                    \
        break;
static void pick(int64_t g, int nib, int mode, poai_rowset_fn *wide, poai_rowset_fn *one) {
    switch (g) {
    PICK(16) PICK(8) PICK(4) PICK(2)
    default:
        *wide = SEL(1, 2);
        *one = SEL(1, 1);
        break;
    }
}

POAI_PACKED_FN(poai_matmul_packed_neon) {
    poai_rowset_fn wide, one;
    int mode = w->pmn1 ? M_S1MN : w->psc1 ? M_S1 : w->pmn ? M_MN : M_PLAIN;
    pick(poai_packed_group(w->K), w->wbits == 4, mode, &wide, &one);
    poai_packed_drive(wide, NT_WIDE, one, qa, s, ysh, asum, T, w, y, nthreads);
}
#else
POAI_PACKED_FN(poai_matmul_packed_neon) {
    poai_matmul_packed_generic(qa, s, ysh, asum, T, w, y, nthreads);
}
#endif
