/*
 * poai_amx.c -- the packed matrix product with AMX-INT8 tiles (TDPBSSD,
 * TDPBUSD) and an AVX-512 epilogue; used only when poai_cpu_has_amx() (CPUID
 * AMX-TILE and AMX-INT8, XCR0 tile state, and Linux's arch_prctl permission
 * granted).  Instructions are enabled per function (target attributes; the
 * tile instructions are inline asm with memory clobbers), the rest of the
 * extension stays baseline x86-64.  Bit-identical to
 * poai_matmul_packed_generic (docs/ENGINE.md "Matrix product"):
 *
 * Activations are int16, AMX multiplies bytes: each quant is split exactly
 * as q = 256*hi + lo, hi = q >> 8 in [-128, 127] (signed), lo = q & 255 in
 * [0, 255] (unsigned).  For one 32-block (K = 32 of the tile op; a block's
 * scale and shift differ from the next block's, so no tile op spans two):
 *
 *     C_hi = TDPBSSD(hi, w)   |C_hi| <= 32 * 128 * 128 = 2^19
 *     C_lo = TDPBUSD(lo, w)   |C_lo| <= 32 * 255 * 128 < 2^20
 *     isum = 256 * C_hi + C_lo = sum w*q   |isum| <= 32 * 128 * 32767 < 2^27
 *
 * (nibble weights 0..15: |C_hi| <= 32*128*15 < 2^16, C_lo < 2^18), all in
 * int32 without wrap; the tile ops do not saturate and none is needed.
 * 16-wide weight blocks (psc1) run K = 16 tile ops for elements 0..15 and
 * 16..31 (i0, i1, each < 2^26).  The epilogue is the definition's int64
 * arithmetic, 16 rows of one token at a time: vpmuldq (32 x 32 -> 64, exact)
 * for scale * isum and offset * asum, vpsllq by the token's s in [0, 10],
 * int64 adds (two's-complement wrap of a partial sum cannot change a final
 * sum that fits int64: docs/ENGINE.md bounds it below 2^63).
 *
 * Layout of the work: AMX's B tile wants 4 consecutive K bytes per output
 * column, the packed layout (poai_packed.h) holds pairs per lane, so each
 * thread repacks a strip of 16 rows (all blocks: K * 16 bytes, plus the
 * strip's scales) into a thread-local buffer and reuses it for every token
 * tile; activations are repacked once per product into hi / lo bytes
 * [T rounded up to 16][K] in natural order (zero rows pad the last token
 * tile).  No second copy of the weights stays resident.  Each output is
 * computed by one thread (strips split statically), so nthreads does not
 * change the bits; exactness makes the order irrelevant anyway.
 */
#include "poai_packed.h"
#include "poai_kernels.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__)
#include <immintrin.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define TAMX __attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512dq,avx512vl")))
#define INLINE __attribute__((always_inline)) inline

/* Tile instructions as asm with memory clobbers (GCC 12's intrinsics have
 * none, so ordinary loads of a stored tile could be moved across them). */
#define TILE_LOAD(t, base, stride) \
    __asm__ volatile("tileloadd (%0,%1,1), %%tmm" #t ::"r"(base), "r"((long)(stride)) : "memory")
#define TILE_STORE(t, base, stride) \
    __asm__ volatile("tilestored %%tmm" #t ", (%0,%1,1)" ::"r"(base), "r"((long)(stride)) : "memory")
#define TILE_ZERO(t) __asm__ volatile("tilezero %%tmm" #t ::)
#define TILE_DPBSSD(c, a, b) __asm__ volatile("tdpbssd %%tmm" #b ", %%tmm" #a ", %%tmm" #c ::)
#define TILE_DPBUSD(c, a, b) __asm__ volatile("tdpbusd %%tmm" #b ", %%tmm" #a ", %%tmm" #c ::)

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tilecfg;

TAMX static void tile_config(int half) {
    tilecfg c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    if (!half) {
        /* tmm0, tmm1: C_hi, C_lo (16 tokens x 16 rows int32); tmm2, tmm3: hi,
         * lo (16 tokens x 32 bytes); tmm4: w (8 x 64: 16 rows x 4 bytes) */
        for (int t = 0; t < 2; t++) c.rows[t] = 16, c.colsb[t] = 64;
        for (int t = 2; t < 4; t++) c.rows[t] = 16, c.colsb[t] = 32;
        c.rows[4] = 8, c.colsb[4] = 64;
    } else {
        /* 16-wide blocks: tmm0-3 C_hi, C_lo of elements 0..15 then 16..31;
         * tmm4, tmm5: hi, lo (16 x 16 bytes); tmm6: w (4 x 64) */
        for (int t = 0; t < 4; t++) c.rows[t] = 16, c.colsb[t] = 64;
        for (int t = 4; t < 6; t++) c.rows[t] = 16, c.colsb[t] = 16;
        c.rows[6] = 4, c.colsb[6] = 64;
    }
    __asm__ volatile("ldtilecfg (%0)" ::"r"(&c) : "memory");
}

TAMX static void tile_release(void) { __asm__ volatile("tilerelease" ::: "memory"); }

#define TT 16 /* tokens per tile (rows of A and C) */
#define RT 16 /* weight rows per strip (columns of B and C) */

/* Per-thread strip buffers: the B tiles of one strip ([nb][8][16][4] bytes)
 * and its per-block lane data in column order, each also with adjacent
 * columns swapped (dword 2j holds column 2j+1: vpmuldq reads even dwords). */
typedef struct {
    int8_t *wb;
    int32_t *sc0, *sc0x, *sc1, *sc1x, *mn, *mnx, *mn1, *mn1x; /* [nb][16] each */
} strip_buf;

/* The packed layout's transposition, one step of it: dwords v[j][p*g + l]
 * (j < g, p < P = 16/g: lane p*g + l of vector j) go to dst[l*stride + j*P + p].
 * For the weights j is a row set of the strip, l a block of the group and a
 * dword 4 bytes of one row; for the lane data the same with one int32; for
 * the activations j is a run of 16/g pairs of the group (the same shape). */
TAMX static INLINE void regroup(const __m512i *v, int64_t g, int32_t *dst, int64_t stride) {
    if (g == 1) {
        _mm512_storeu_si512(dst, v[0]);
    } else if (g == 2) {
        const __m512i i0 = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        const __m512i i1 = _mm512_add_epi32(i0, _mm512_set1_epi32(1));
        _mm512_storeu_si512(dst, _mm512_permutex2var_epi32(v[0], i0, v[1]));
        _mm512_storeu_si512(dst + stride, _mm512_permutex2var_epi32(v[0], i1, v[1]));
    } else if (g == 16) { /* P = 1: a 16 x 16 dword transpose */
        __m512i t[16], u[16];
        for (int i = 0; i < 16; i += 2) {
            t[i] = _mm512_unpacklo_epi32(v[i], v[i + 1]);
            t[i + 1] = _mm512_unpackhi_epi32(v[i], v[i + 1]);
        }
        for (int q = 0; q < 16; q += 4) { /* u[q + c]: rows q..q+3 of column 4k + c, lane k */
            u[q] = _mm512_unpacklo_epi64(t[q], t[q + 2]);
            u[q + 1] = _mm512_unpackhi_epi64(t[q], t[q + 2]);
            u[q + 2] = _mm512_unpacklo_epi64(t[q + 1], t[q + 3]);
            u[q + 3] = _mm512_unpackhi_epi64(t[q + 1], t[q + 3]);
        }
        for (int c = 0; c < 4; c++) {
            __m512i x = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x88), y = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xDD);
            __m512i z = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x88), w = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xDD);
            _mm512_storeu_si512(dst + c * stride, _mm512_shuffle_i32x4(x, z, 0x88));
            _mm512_storeu_si512(dst + (4 + c) * stride, _mm512_shuffle_i32x4(y, w, 0x88));
            _mm512_storeu_si512(dst + (8 + c) * stride, _mm512_shuffle_i32x4(x, z, 0xDD));
            _mm512_storeu_si512(dst + (12 + c) * stride, _mm512_shuffle_i32x4(y, w, 0xDD));
        }
    } else { /* g = 4 or 8: sort each vector l-major, then P dwords per (j, l) */
        int32_t ix[16];
        int64_t P = POAI_LANES / g;
        for (int64_t l = 0; l < g; l++)
            for (int64_t p = 0; p < P; p++) ix[l * P + p] = (int32_t)(p * g + l);
        __m512i idx = _mm512_loadu_si512(ix);
        for (int64_t j = 0; j < g; j++) {
            __m512i x = _mm512_permutexvar_epi32(idx, v[j]);
            for (int64_t l = 0; l < g; l++) /* dwords l*P .. l*P+P-1 of x */
                _mm512_mask_storeu_epi32(dst + l * stride + (j - l) * P,
                                         (__mmask16)(((1u << P) - 1) << (l * P)), x);
        }
    }
}

/* Dwords 4kk..4kk+3 of every lane of one (row set, group) chunk: pairs 2kk
 * and 2kk+1 (64 contiguous bytes for int8; for nibbles the low (kk < 4) or
 * high nibbles of byte rows 2kk & 7 and 2kk+1 & 7), interleaved per lane. */
TAMX static INLINE __m512i chunk_quad(const uint8_t *chunk, int nib, int kk) {
    const __m512i ix = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                        23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    __m512i z;
    if (nib) {
        z = _mm512_loadu_si512(chunk + ((2 * kk) & 7) * 32);
        if (kk >= 4) z = _mm512_srli_epi16(z, 4);
        z = _mm512_and_si512(z, _mm512_set1_epi8(0x0F));
    } else {
        z = _mm512_loadu_si512(chunk + 2 * kk * 32);
    }
    return _mm512_permutexvar_epi16(ix, z); /* word 2L = pair 2kk lane L, 2L+1 = pair 2kk+1 */
}

/* Strip rows r0 .. r0+15 (row sets r0/P .. r0/P + g-1) into B-tile order:
 * wb[b*512 + kk*64 + n*4 + j] = element 4kk+j of row r0+n's block b, and
 * the lane data in the same column order (rows past the matrix are the
 * layout's zero rows or zeros here; their columns are never written out). */
TAMX static void repack_strip(const poai_pmat *w, int64_t r0, strip_buf *sb) {
    int64_t K = w->K, nb = K / POAI_QBLOCK, g = poai_packed_group(K), ng = nb / g;
    int64_t P = POAI_LANES / g, rs0 = r0 / P, nrs = poai_packed_rowsets(w->rows, K);
    int64_t cb = w->wbits == 4 ? 256 : 512;
    int nib = w->wbits == 4;
    const int32_t *src[4] = {w->psc0, w->psc1, w->pmn, w->pmn1};
    int32_t *dst[4] = {sb->sc0, sb->sc1, sb->mn, sb->mn1}, *dsx[4] = {sb->sc0x, sb->sc1x, sb->mnx, sb->mn1x};
    __m512i v[16];
    for (int64_t gi = 0; gi < ng; gi++) {
        for (int kk = 0; kk < 8; kk++) {
            for (int64_t j = 0; j < g; j++)
                v[j] = rs0 + j < nrs ? chunk_quad(w->wp + ((rs0 + j) * ng + gi) * cb, nib, kk)
                                     : _mm512_setzero_si512();
            regroup(v, g, (int32_t *)(sb->wb + gi * g * 512 + kk * 64), 128);
        }
        for (int a = 0; a < 4; a++) {
            if (!src[a]) continue;
            for (int64_t j = 0; j < g; j++)
                v[j] = rs0 + j < nrs ? _mm512_loadu_si512(src[a] + ((rs0 + j) * ng + gi) * POAI_LANES)
                                     : _mm512_setzero_si512();
            regroup(v, g, dst[a] + gi * g * RT, RT);
            for (int64_t l = 0; l < g; l++) { /* adjacent columns swapped, for vpmuldq */
                int64_t o = (gi * g + l) * RT;
                _mm512_storeu_si512(dsx[a] + o, _mm512_shuffle_epi32(_mm512_loadu_si512(dst[a] + o), _MM_PERM_CDAB));
            }
        }
    }
}

/* Per-product activation data in natural order: hi / lo bytes [Tp][K] and
 * per (token, block) s, asum and (16-wide offsets only) asum_lo. */
typedef struct {
    int8_t *hi;
    uint8_t *lo;
    int64_t *s, *asum, *alo; /* [T][nb] */
} act_buf;

TAMX static void repack_token(const int16_t *qa, const int64_t *s, const int64_t *asum, int64_t K,
                              int64_t t, int want_alo, act_buf *ab) {
    int64_t nb = K / POAI_QBLOCK, g = poai_packed_group(K), ng = nb / g;
    const int16_t *at = qa + t * K;
    int16_t nat[16 * 32]; /* one group's blocks in natural order */
    __m512i v[16];
    for (int64_t gi = 0; gi < ng; gi++) {
        for (int64_t j = 0; j < g; j++) v[j] = _mm512_loadu_si512(at + gi * 32 * g + j * 32);
        regroup(v, g, (int32_t *)nat, 16); /* dword k*g + l (pair k, block l) -> l*16 + k */
        for (int64_t l = 0; l < g; l++) {
            int64_t b = gi * g + l, o = t * ng * POAI_LANES + gi * POAI_LANES + l;
            __m512i q = _mm512_loadu_si512(nat + l * 32);
            /* hi = q >> 8 (arithmetic) and lo = q & 255: the low bytes (vpmovwb truncates) */
            _mm256_storeu_si256((__m256i *)(ab->hi + t * K + b * 32), _mm512_cvtepi16_epi8(_mm512_srai_epi16(q, 8)));
            _mm256_storeu_si256((__m256i *)(ab->lo + t * K + b * 32), _mm512_cvtepi16_epi8(q));
            ab->s[t * nb + b] = s[o];
            ab->asum[t * nb + b] = asum[o];
            if (want_alo) {
                int64_t lo16 = 0; /* |.| <= 16 * 32767 < 2^19 */
                for (int i = 0; i < 16; i++) lo16 += nat[l * 32 + i];
                ab->alo[t * nb + b] = lo16;
            }
        }
    }
}

/* isum (int32, exact) of the 16 columns from the C_hi and C_lo rows.  The
 * 256 * C_hi is a byte shuffle (vpshufb, port 5) rather than vpslld (port 0,
 * where the epilogue's multiplies and shifts queue): |256 C_hi| < 2^27, so the
 * dropped top byte holds only sign bits. */
TAMX static INLINE __m512i isum16(const int32_t *chi, const int32_t *clo) {
    const __m512i up8 = _mm512_set4_epi32(0x0E0D0C80, 0x0A090880, 0x06050480, 0x02010080);
    return _mm512_add_epi32(_mm512_loadu_si512(clo), _mm512_shuffle_epi8(_mm512_loadu_si512(chi), up8));
}

#define CH 4 /* blocks per chunk: tile ops of the next chunk overlap this one's epilogue */
/* int32 between two blocks' C tiles and between the two chunk buffers: padded
 * off multiples of 4 KiB (a precaution against 4K aliasing of the next
 * chunk's tile stores with this chunk's loads; no gain measured here) */
#define CBLK(HALF) ((HALF ? 4 : 2) * 256 + 16)
#define CSTEP(HALF) (CH * CBLK(HALF) + 32)

/* One chunk's epilogue (blocks b0 .. b0+nc-1; C tiles at c, 1 KiB each, HALF:
 * 4 per block, else 2) for nt tokens: acc[u] (even columns in 0..7, odd in
 * 8..15) += inner << s, the accumulators in registers across the chunk. */
TAMX static INLINE void epilogue(const int HALF, const int MN, const int MN16, const int32_t *c,
                                 int64_t b0, int nc, int nt, const strip_buf *sb, const int64_t *s,
                                 const int64_t *asum, const int64_t *alo, int64_t nb,
                                 int64_t (*acc)[16]) {
    for (int u = 0; u < nt; u++) {
        __m512i ae = _mm512_loadu_si512(acc[u]), ax = _mm512_loadu_si512(acc[u] + 8);
#pragma GCC unroll 4
        for (int bb = 0; bb < nc; bb++) {
            const int32_t *cb = c + bb * CBLK(HALF) + u * 16;
            const int64_t o = (b0 + bb) * RT, tb = u * nb + b0 + bb;
            __m512i is = isum16(cb, cb + 256);
            __m512i isx = _mm512_shuffle_epi32(is, _MM_PERM_CDAB); /* odd columns to even dwords */
            __m512i e = _mm512_mul_epi32(is, _mm512_loadu_si512(sb->sc0 + o));
            __m512i x = _mm512_mul_epi32(isx, _mm512_loadu_si512(sb->sc0x + o));
            if (HALF) {
                __m512i i1 = isum16(cb + 512, cb + 768);
                __m512i i1x = _mm512_shuffle_epi32(i1, _MM_PERM_CDAB);
                e = _mm512_add_epi64(e, _mm512_mul_epi32(i1, _mm512_loadu_si512(sb->sc1 + o)));
                x = _mm512_add_epi64(x, _mm512_mul_epi32(i1x, _mm512_loadu_si512(sb->sc1x + o)));
            }
            if (MN16) { /* asum_lo and asum - asum_lo: each |.| < 2^19 */
                __m512i lo = _mm512_set1_epi64(alo[tb]), hi = _mm512_set1_epi64(asum[tb] - alo[tb]);
                e = _mm512_add_epi64(e, _mm512_add_epi64(_mm512_mul_epi32(_mm512_loadu_si512(sb->mn + o), lo),
                                                         _mm512_mul_epi32(_mm512_loadu_si512(sb->mn1 + o), hi)));
                x = _mm512_add_epi64(x, _mm512_add_epi64(_mm512_mul_epi32(_mm512_loadu_si512(sb->mnx + o), lo),
                                                         _mm512_mul_epi32(_mm512_loadu_si512(sb->mn1x + o), hi)));
            } else if (MN) { /* |asum| < 2^20: its low dword is its value */
                __m512i av = _mm512_set1_epi64(asum[tb]);
                e = _mm512_add_epi64(e, _mm512_mul_epi32(_mm512_loadu_si512(sb->mn + o), av));
                x = _mm512_add_epi64(x, _mm512_mul_epi32(_mm512_loadu_si512(sb->mnx + o), av));
            }
            __m512i sv = _mm512_set1_epi64(s[tb]); /* in [0, 10] */
            ae = _mm512_add_epi64(ae, _mm512_sllv_epi64(e, sv));
            ax = _mm512_add_epi64(ax, _mm512_sllv_epi64(x, sv));
        }
        _mm512_storeu_si512(acc[u], ae);
        _mm512_storeu_si512(acc[u] + 8, ax);
    }
}

/* C_hi (tile CH) and C_lo (tile CL) of one block (half): hi / lo bytes at hp / lp
 * (stride K) into tiles AH / AL, the weights' B tile at wp into tile B. */
#define TILE_BLOCK(CH_, CL, AH, AL, B, hp, lp, wp) \
    do {                                           \
        TILE_LOAD(AH, hp, K);                      \
        TILE_LOAD(AL, lp, K);                      \
        TILE_LOAD(B, wp, 64);                      \
        TILE_ZERO(CH_);                            \
        TILE_ZERO(CL);                             \
        TILE_DPBSSD(CH_, AH, B);                   \
        TILE_DPBUSD(CL, AL, B);                    \
    } while (0)

/* The tile ops of blocks b0 .. b0+nc-1 for one token tile; C tiles to c. */
TAMX static INLINE void tiles(const int HALF, const int8_t *hi, const uint8_t *lo, int64_t K,
                              const int8_t *wbase, int64_t b0, int nc, int32_t *c) {
    for (int bb = 0; bb < nc; bb++) {
        int64_t b = b0 + bb;
        const int8_t *wb = wbase + b * 512;
        int32_t *cb = c + bb * CBLK(HALF);
        if (!HALF) {
            TILE_BLOCK(0, 1, 2, 3, 4, hi + b * 32, lo + b * 32, wb);
            TILE_STORE(0, cb, 64);
            TILE_STORE(1, cb + 256, 64);
        } else { /* elements 0..15 into tiles 0, 1; 16..31 into 2, 3 */
            TILE_BLOCK(0, 1, 4, 5, 6, hi + b * 32, lo + b * 32, wb);
            TILE_BLOCK(2, 3, 4, 5, 6, hi + b * 32 + 16, lo + b * 32 + 16, wb + 256);
            TILE_STORE(0, cb, 64);
            TILE_STORE(1, cb + 256, 64);
            TILE_STORE(2, cb + 512, 64);
            TILE_STORE(3, cb + 768, 64);
        }
    }
}

/* One strip (rows r0..) against one token tile (t0.., nt valid of 16);
 * c holds two chunks' C tiles (2 x CH x 4 KiB at most). */
TAMX static INLINE void strip_tile(const int HALF, const int MN, const int MN16, const act_buf *ab,
                                   int64_t K, int64_t t0, int nt, const strip_buf *sb,
                                   int32_t *c, int64_t (*acc)[16]) {
    int64_t nb = K / POAI_QBLOCK;
    const int8_t *hi = ab->hi + t0 * K;
    const uint8_t *lo = ab->lo + t0 * K;
    const int64_t *s = ab->s + t0 * nb, *as = ab->asum + t0 * nb, *al = ab->alo ? ab->alo + t0 * nb : 0;
    const int64_t cstep = CSTEP(HALF);
    memset(acc, 0, sizeof(int64_t[TT][16]));
    int n0 = nb < CH ? (int)nb : CH;
#if !defined(POAI_AMX_PROF) || POAI_AMX_PROF != 2
    tiles(HALF, hi, lo, K, sb->wb, 0, n0, c);
#endif
    for (int64_t b0 = 0, k = 0; b0 < nb; b0 += CH, k ^= 1) {
        int nc = nb - b0 < CH ? (int)(nb - b0) : CH;
        if (b0 + CH < nb) { /* the next chunk's tile ops, into the other buffer */
            int nn = nb - b0 - CH < CH ? (int)(nb - b0 - CH) : CH;
#if !defined(POAI_AMX_PROF) || POAI_AMX_PROF != 2
            tiles(HALF, hi, lo, K, sb->wb, b0 + CH, nn, c + (k ^ 1) * cstep);
#endif
        }
#ifndef POAI_AMX_PROF
        epilogue(HALF, MN, MN16, c + k * cstep, b0, nc, nt, sb, s, as, al, nb, acc);
#else /* timing only: 1 = tile ops without the epilogue, 2 = the epilogue alone */
        if (POAI_AMX_PROF == 2) epilogue(HALF, MN, MN16, c + k * cstep, b0, nc, nt, sb, s, as, al, nb, acc);
#endif
    }
}

typedef void (*strip_fn)(const act_buf *, int64_t, int64_t, int, const strip_buf *, int32_t *,
                         int64_t (*)[16]);
#define STRIP_FN(H, M, M16)                                                                   \
    TAMX static void strip_##H##M##M16(const act_buf *ab, int64_t K, int64_t t0, int nt,       \
                                      const strip_buf *sb, int32_t *c, int64_t (*acc)[16]) {   \
        strip_tile(H, M, M16, ab, K, t0, nt, sb, c, acc);                                      \
    }
STRIP_FN(0, 0, 0) STRIP_FN(0, 1, 0) STRIP_FN(1, 0, 0) STRIP_FN(1, 1, 0) STRIP_FN(1, 1, 1)

/* y = rshift_round(acc, ysh) for the strip's valid rows (acc: even columns in
 * lanes 0..7, odd in 8..15). */
static void finish(const int64_t *acc, int64_t ysh, int64_t r0, int64_t rows, int64_t *yrow) {
    for (int n = 0; n < RT && r0 + n < rows; n++) {
        int64_t a = acc[(n & 1) * 8 + (n >> 1)];
        yrow[r0 + n] = (a + ((int64_t)1 << (ysh - 1))) >> ysh;
    }
}

static void *alloc64(size_t n) { return aligned_alloc(64, (n + 63) / 64 * 64); }

/* Fewer tokens than one tile: the AVX-512 kernel (same bits) is faster
 * (measured on SmolLM2's shapes: amx at 0.25x (T = 1) to 0.8x (T = 12) of
 * avx512, 1.2x at T = 16), since a tile op costs the same for 1 token as
 * for 16.  Tests lower it to 1 to check the tile path on every T. */
int poai_amx_min_tokens = 16;

POAI_PACKED_FN(poai_matmul_packed_amx) {
    if (T < poai_amx_min_tokens) {
        poai_matmul_packed_avx512(qa, s, ysh, asum, T, w, y, nthreads);
        return;
    }
    int64_t K = w->K, rows = w->rows, nb = K / POAI_QBLOCK;
    int64_t Tp = (T + TT - 1) / TT * TT, nstrip = (rows + RT - 1) / RT;
    int half = w->psc1 != 0, mn = w->pmn != 0, mn16 = w->pmn1 != 0;
    strip_fn fn = half ? (mn16 ? strip_111 : mn ? strip_110 : strip_100)
                       : (mn ? strip_010 : strip_000);
    int nth = nthreads;
    if (nth > nstrip) nth = (int)nstrip;
    act_buf ab = {0};
    ab.hi = alloc64((size_t)(Tp * K));
    ab.lo = alloc64((size_t)(Tp * K));
    ab.s = alloc64(sizeof(int64_t) * T * nb);
    ab.asum = alloc64(sizeof(int64_t) * T * nb);
    ab.alo = mn16 ? alloc64(sizeof(int64_t) * T * nb) : 0;
    /* per thread: B tiles, 8 lane-data arrays, C tiles, accumulators */
    size_t cbytes = (2 * CSTEP(1) * 4 + 63) / 64 * 64; /* two chunks of C tiles */
    size_t per = (size_t)nb * 512 + 8 * sizeof(int32_t) * nb * RT + cbytes + sizeof(int64_t[TT][16]);
    per = (per + 63) / 64 * 64;
    char *tb = alloc64(per * nth);
    if (!ab.hi || !ab.lo || !ab.s || !ab.asum || (mn16 && !ab.alo) || !tb) {
        free(ab.hi), free(ab.lo), free(ab.s), free(ab.asum), free(ab.alo), free(tb);
        poai_matmul_packed_avx512(qa, s, ysh, asum, T, w, y, nthreads); /* same bits */
        return;
    }
#pragma omp parallel for schedule(static) num_threads(nthreads) if (nthreads > 1 && T >= 8)
    for (int64_t t = 0; t < T; t++) repack_token(qa, s, asum, K, t, mn16, &ab);
    memset(ab.hi + T * K, 0, (size_t)((Tp - T) * K));
    memset(ab.lo + T * K, 0, (size_t)((Tp - T) * K));
#pragma omp parallel num_threads(nth) if (nth > 1)
    {
        int me = 0;
#ifdef _OPENMP
        me = omp_get_thread_num();
#endif
        char *mine = tb + per * me;
        strip_buf sb;
        sb.wb = (int8_t *)mine;
        int32_t *lanes = (int32_t *)(mine + nb * 512);
        int32_t **arrs[8] = {&sb.sc0, &sb.sc0x, &sb.sc1, &sb.sc1x, &sb.mn, &sb.mnx, &sb.mn1, &sb.mn1x};
        for (int i = 0; i < 8; i++) *arrs[i] = lanes + i * nb * RT;
        int32_t *c = lanes + 8 * nb * RT; /* C tiles, 64-aligned */
        int64_t (*acc)[16] = (int64_t (*)[16])((char *)c + cbytes);
        tile_config(half);
#pragma omp for schedule(static)
        for (int64_t st = 0; st < nstrip; st++) {
            int64_t r0 = st * RT;
            repack_strip(w, r0, &sb);
            for (int64_t t0 = 0; t0 < T; t0 += TT) {
                int nt = T - t0 < TT ? (int)(T - t0) : TT;
                fn(&ab, K, t0, nt, &sb, c, acc);
                for (int u = 0; u < nt; u++) finish(acc[u], ysh[t0 + u], r0, rows, y + (t0 + u) * rows);
            }
        }
        tile_release();
    }
    free(ab.hi), free(ab.lo), free(ab.s), free(ab.asum), free(ab.alo), free(tb);
}
#else
int poai_amx_min_tokens = 16;

POAI_PACKED_FN(poai_matmul_packed_amx) {
    poai_matmul_packed_generic(qa, s, ysh, asum, T, w, y, nthreads);
}
#endif
