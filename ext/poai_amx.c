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

/* Element i of row r's block b (the stored quant: int8, or 0..15). */
static INLINE int weight_at(const poai_pmat *w, int64_t g, int64_t ng, int64_t r, int64_t b,
                            int i) {
    int64_t P = POAI_LANES / g, rs = r / P, p = r % P, gi = b / g, l = b % g, L = p * g + l;
    if (w->wbits == 4) {
        uint8_t byte = w->wp[(rs * ng + gi) * 256 + ((i & 15) >> 1) * 32 + L * 2 + (i & 1)];
        return i < 16 ? byte & 0x0F : byte >> 4;
    }
    return (int8_t)w->wp[(rs * ng + gi) * 512 + (i >> 1) * 32 + L * 2 + (i & 1)];
}

/* Strip rows r0 .. r0+15 into B-tile order: wb[b*512 + kk*64 + n*4 + j] =
 * element 4kk+j of row r0+n's block b (zero past the last row); lane data
 * likewise (zero past the last row, so padding columns contribute 0). */
static void repack_strip(const poai_pmat *w, int64_t r0, strip_buf *sb) {
    int64_t K = w->K, rows = w->rows, nb = K / POAI_QBLOCK, g = poai_packed_group(K);
    int64_t ng = nb / g, P = POAI_LANES / g;
    for (int64_t b = 0; b < nb; b++) {
        int8_t *dst = sb->wb + b * 512;
        for (int n = 0; n < RT; n++) {
            int64_t r = r0 + n, o = b * RT + n;
            if (r >= rows) {
                for (int kk = 0; kk < 8; kk++) memset(dst + kk * 64 + n * 4, 0, 4);
                sb->sc0[o] = 0;
                if (w->psc1) sb->sc1[o] = 0;
                if (w->pmn) sb->mn[o] = 0;
                if (w->pmn1) sb->mn1[o] = 0;
            } else {
                for (int i = 0; i < POAI_QBLOCK; i++)
                    dst[(i >> 2) * 64 + n * 4 + (i & 3)] = (int8_t)weight_at(w, g, ng, r, b, i);
                int64_t rs = r / P, p = r % P, gi = b / g, l = b % g;
                int64_t wl = (rs * ng + gi) * POAI_LANES + p * g + l;
                sb->sc0[o] = w->psc0[wl];
                if (w->psc1) sb->sc1[o] = w->psc1[wl];
                if (w->pmn) sb->mn[o] = w->pmn[wl];
                if (w->pmn1) sb->mn1[o] = w->pmn1[wl];
            }
        }
        for (int n = 0; n < RT; n++) {
            int64_t o = b * RT + n, x = b * RT + (n ^ 1);
            sb->sc0x[x] = sb->sc0[o];
            if (w->psc1) sb->sc1x[x] = sb->sc1[o];
            if (w->pmn) sb->mnx[x] = sb->mn[o];
            if (w->pmn1) sb->mn1x[x] = sb->mn1[o];
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

static void repack_token(const int16_t *qa, const int64_t *s, const int64_t *asum, int64_t K,
                         int64_t t, int want_alo, act_buf *ab) {
    int64_t nb = K / POAI_QBLOCK, g = poai_packed_group(K), ng = nb / g;
    const int16_t *at = qa + t * K;
    for (int64_t b = 0; b < nb; b++) {
        int64_t gi = b / g, l = b % g;
        const int16_t *ag = at + gi * 32 * g + 2 * l;
        int64_t lo16 = 0; /* |.| <= 16 * 32767 < 2^19 */
        for (int i = 0; i < POAI_QBLOCK; i++) {
            int16_t q = ag[(i >> 1) * 2 * g + (i & 1)];
            ab->hi[t * K + b * 32 + i] = (int8_t)(q >> 8);
            ab->lo[t * K + b * 32 + i] = (uint8_t)(q & 0xFF);
            if (i < 16) lo16 += q;
        }
        int64_t o = t * ng * POAI_LANES + gi * POAI_LANES + l;
        ab->s[t * nb + b] = s[o];
        ab->asum[t * nb + b] = asum[o];
        if (want_alo) ab->alo[t * nb + b] = lo16;
    }
}

/* isum (int32, exact) of the 16 columns from the C_hi and C_lo rows. */
TAMX static INLINE __m512i isum16(const int32_t *chi, const int32_t *clo) {
    return _mm512_add_epi32(_mm512_loadu_si512(clo), _mm512_slli_epi32(_mm512_loadu_si512(chi), 8));
}

/* One block's epilogue for nt tokens: acc[u] (even columns in 0..7, odd in
 * 8..15) += inner << s.  C rows are 16 int32 apart; c has C_hi, C_lo (and for
 * HALF the second half's C_hi, C_lo) 256 int32 apart. */
TAMX static INLINE void epilogue(const int HALF, const int MN, const int MN16, const int32_t *c,
                                 int nt, const strip_buf *sb, int64_t b, const int64_t *s,
                                 const int64_t *asum, const int64_t *alo, int64_t nb,
                                 int64_t (*acc)[16]) {
    const int64_t o = b * RT;
    __m512i sc0 = _mm512_loadu_si512(sb->sc0 + o), sc0x = _mm512_loadu_si512(sb->sc0x + o);
    __m512i sc1 = sc0, sc1x = sc0, mn = sc0, mnx = sc0, mn1 = sc0, mn1x = sc0;
    if (HALF) sc1 = _mm512_loadu_si512(sb->sc1 + o), sc1x = _mm512_loadu_si512(sb->sc1x + o);
    if (MN) mn = _mm512_loadu_si512(sb->mn + o), mnx = _mm512_loadu_si512(sb->mnx + o);
    if (MN16) mn1 = _mm512_loadu_si512(sb->mn1 + o), mn1x = _mm512_loadu_si512(sb->mn1x + o);
    for (int u = 0; u < nt; u++) {
        __m512i is = isum16(c + u * 16, c + 256 + u * 16);
        __m512i isx = _mm512_shuffle_epi32(is, _MM_PERM_CDAB); /* odd columns to even dwords */
        __m512i e = _mm512_mul_epi32(is, sc0), x = _mm512_mul_epi32(isx, sc0x);
        if (HALF) {
            __m512i i1 = isum16(c + 512 + u * 16, c + 768 + u * 16);
            __m512i i1x = _mm512_shuffle_epi32(i1, _MM_PERM_CDAB);
            e = _mm512_add_epi64(e, _mm512_mul_epi32(i1, sc1));
            x = _mm512_add_epi64(x, _mm512_mul_epi32(i1x, sc1x));
        }
        int64_t tb = u * nb + b;
        if (MN16) { /* asum_lo and asum - asum_lo: each |.| < 2^19 */
            __m512i lo = _mm512_set1_epi64(alo[tb]), hi = _mm512_set1_epi64(asum[tb] - alo[tb]);
            e = _mm512_add_epi64(e, _mm512_add_epi64(_mm512_mul_epi32(mn, lo), _mm512_mul_epi32(mn1, hi)));
            x = _mm512_add_epi64(x, _mm512_add_epi64(_mm512_mul_epi32(mnx, lo), _mm512_mul_epi32(mn1x, hi)));
        } else if (MN) { /* |asum| < 2^20: its low dword is its value */
            __m512i av = _mm512_set1_epi64(asum[tb]);
            e = _mm512_add_epi64(e, _mm512_mul_epi32(mn, av));
            x = _mm512_add_epi64(x, _mm512_mul_epi32(mnx, av));
        }
        __m128i sv = _mm_cvtsi64_si128(s[tb]); /* in [0, 10] */
        _mm512_storeu_si512(acc[u], _mm512_add_epi64(_mm512_loadu_si512(acc[u]), _mm512_sll_epi64(e, sv)));
        _mm512_storeu_si512(acc[u] + 8, _mm512_add_epi64(_mm512_loadu_si512(acc[u] + 8), _mm512_sll_epi64(x, sv)));
    }
}

/* One strip (rows r0..) against one token tile (t0.., nt valid of 16). */
TAMX static INLINE void strip_tile(const int HALF, const int MN, const int MN16, const act_buf *ab,
                                   int64_t K, int64_t t0, int nt, const strip_buf *sb,
                                   int32_t *c, int64_t (*acc)[16]) {
    int64_t nb = K / POAI_QBLOCK;
    const int8_t *hi = ab->hi + t0 * K;
    const uint8_t *lo = ab->lo + t0 * K;
    const int64_t *s = ab->s + t0 * nb, *as = ab->asum + t0 * nb, *al = ab->alo ? ab->alo + t0 * nb : 0;
    memset(acc, 0, sizeof(int64_t[TT][16]));
    for (int64_t b = 0; b < nb; b++) {
        const int8_t *wb = sb->wb + b * 512;
        if (!HALF) {
            TILE_LOAD(2, hi + b * 32, K);
            TILE_LOAD(3, lo + b * 32, K);
            TILE_LOAD(4, wb, 64);
            TILE_ZERO(0);
            TILE_ZERO(1);
            TILE_DPBSSD(0, 2, 4);
            TILE_DPBUSD(1, 3, 4);
            TILE_STORE(0, c, 64);
            TILE_STORE(1, c + 256, 64);
        } else {
            TILE_LOAD(4, hi + b * 32, K);
            TILE_LOAD(5, lo + b * 32, K);
            TILE_LOAD(6, wb, 64);
            TILE_ZERO(0);
            TILE_ZERO(1);
            TILE_DPBSSD(0, 4, 6);
            TILE_DPBUSD(1, 5, 6);
            TILE_LOAD(4, hi + b * 32 + 16, K);
            TILE_LOAD(5, lo + b * 32 + 16, K);
            TILE_LOAD(6, wb + 256, 64);
            TILE_ZERO(2);
            TILE_ZERO(3);
            TILE_DPBSSD(2, 4, 6);
            TILE_DPBUSD(3, 5, 6);
            TILE_STORE(0, c, 64);
            TILE_STORE(1, c + 256, 64);
            TILE_STORE(2, c + 512, 64);
            TILE_STORE(3, c + 768, 64);
        }
        epilogue(HALF, MN, MN16, c, nt, sb, b, s, as, al, nb, acc);
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

POAI_PACKED_FN(poai_matmul_packed_amx) {
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
    size_t per = (size_t)nb * 512 + 8 * sizeof(int32_t) * nb * RT + 4096 + sizeof(int64_t[TT][16]);
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
        int32_t *c = lanes + 8 * nb * RT; /* 4 C tiles: 4 KiB, 64-aligned */
        int64_t (*acc)[16] = (int64_t (*)[16])(c + 1024);
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
POAI_PACKED_FN(poai_matmul_packed_amx) {
    poai_matmul_packed_generic(qa, s, ysh, asum, T, w, y, nthreads);
}
#endif
