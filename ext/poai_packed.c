/*
 * poai_packed.c -- packing, packed quantization, the portable packed matrix
 * product and CPU detection.  See poai_packed.h for the layout and
 * docs/ENGINE.md for the arithmetic; no floating point anywhere.
 */
#include "poai_packed.h"
#include "poai_kernels.h"

#include <stdlib.h>
#include <string.h>

int64_t poai_packed_group(int64_t K) {
    int64_t nb = K / POAI_QBLOCK, g = POAI_LANES;
    while (nb % g) g >>= 1; /* gcd(nb, 16): 16 is a power of two */
    return g;
}

int64_t poai_packed_rowsets(int64_t rows, int64_t K) {
    int64_t P = POAI_LANES / poai_packed_group(K);
    return (rows + P - 1) / P;
}

/* One token of poai_quantize_packed: each block's exponent once, then its
 * quants (docs/ENGINE.md), written pair by pair into the packed order. */
static inline __attribute__((always_inline)) void quantize_token(
    const int64_t *xt, int64_t K, int16_t *d, int64_t *s, int64_t *ysh, int64_t *asum) {
    int64_t nb = K / POAI_QBLOCK, g = poai_packed_group(K);
    int e0[nb];
    /* the token's largest block exponent E; no block goes below E - 10 */
    int emax = -15;
    for (int64_t b = 0; b < nb; b++) {
        e0[b] = poai_block_exponent(xt + b * POAI_QBLOCK);
        emax = e0[b] > emax ? e0[b] : emax;
    }
    int base = emax - POAI_EXP_SPREAD;
    *ysh = 24 - base; /* in [17, 49] */
    for (int64_t b = 0; b < nb; b++) {
        int e = e0[b] > base ? e0[b] : base;
        int16_t q[POAI_QBLOCK];
        poai_quantize_block(xt + b * POAI_QBLOCK, e, q);
        int64_t gi = b / g, l = b % g;
        int64_t sum = 0; /* |sum| <= 32 * 32767 < 2^20 */
        for (int64_t i = 0; i < POAI_QBLOCK; i++) sum += q[i];
        int16_t *dg = d + gi * 32 * g + 2 * l;
        for (int64_t k = 0; k < POAI_QBLOCK / 2; k++) memcpy(dg + k * 2 * g, q + 2 * k, 4);
        int64_t *sg = s + gi * POAI_LANES + l, *ag = asum + gi * POAI_LANES + l;
        for (int64_t p = 0; p < POAI_LANES / g; p++) {
            sg[p * g] = e - base; /* in [0, 10] */
            ag[p * g] = sum;
        }
    }
}

static void quantize_token_generic(const int64_t *xt, int64_t K, int16_t *d, int64_t *s,
                                   int64_t *ysh, int64_t *asum) {
    quantize_token(xt, K, d, s, ysh, asum);
}

#if defined(__x86_64__) && defined(__GNUC__)
/* The same code compiled for AVX2 (the block loops vectorize); integer
 * arithmetic only, so the bits are those of the generic build. */
__attribute__((target("avx2"))) static void quantize_token_avx2(
    const int64_t *xt, int64_t K, int16_t *d, int64_t *s, int64_t *ysh, int64_t *asum) {
    quantize_token(xt, K, d, s, ysh, asum);
}
#endif

void poai_quantize_packed(int variant, const int64_t *x, int64_t T, int64_t K, int16_t *qa,
                          int64_t *s, int64_t *ysh, int64_t *asum, int nthreads) {
    int64_t nb = K / POAI_QBLOCK, g = poai_packed_group(K), ng = nb / g;
    void (*tok)(const int64_t *, int64_t, int16_t *, int64_t *, int64_t *, int64_t *) =
        quantize_token_generic;
#if defined(__x86_64__) && defined(__GNUC__)
    if (variant != POAI_VARIANT_GENERIC && poai_cpu_has_avx2()) tok = quantize_token_avx2;
#endif
    /* tokens are independent: any split gives the same bits */
#pragma omp parallel for schedule(static) num_threads(nthreads) if (nthreads > 1 && T >= 8)
    for (int64_t t = 0; t < T; t++)
        tok(x + t * K, K, qa + t * K, s + t * ng * POAI_LANES, ysh + t, asum + t * ng * POAI_LANES);
}

void poai_packed_finish(const int64_t *lanes, int64_t g, int64_t rs, int64_t rows, int64_t ysh,
                        int64_t *yrow) {
    int64_t P = POAI_LANES / g;
    for (int64_t p = 0; p < P; p++) {
        int64_t row = rs * P + p;
        if (row >= rows) break;
        int64_t acc = 0; /* |acc| <= l1row * 2^25 < 2^63 (docs/ENGINE.md) */
        for (int64_t l = 0; l < g; l++) acc += lanes[p * g + l];
        yrow[row] = (acc + ((int64_t)1 << (ysh - 1))) >> ysh;
    }
}

#define RS_CHUNK 4   /* row sets per task: their weights stay in L1/L2 */
#define T_TILE 32    /* tokens per tile: their packed activations stay in L2 */

/* Bytes of one (row set, group) weight chunk: 16 lanes x 32 weights. */
static inline int64_t chunk_bytes(int wbits) { return wbits == 4 ? 256 : 512; }

void poai_packed_drive(poai_rowset_fn wide, int nt_wide, poai_rowset_fn one, const int16_t *qa,
                       const int64_t *s, const int64_t *ysh, const int64_t *asum, int64_t T,
                       const poai_pmat *w, int64_t *y, int nthreads) {
    int64_t K = w->K, rows = w->rows;
    int64_t nb = K / POAI_QBLOCK, g = poai_packed_group(K), ng = nb / g;
    int64_t nrs = poai_packed_rowsets(rows, K), cb = chunk_bytes(w->wbits);
    int64_t ntasks = (nrs + RS_CHUNK - 1) / RS_CHUNK;
    const uint8_t *wp = w->wp;
    const int32_t *psc0 = w->psc0, *psc1 = w->psc1, *pmn = w->pmn, *pmn1 = w->pmn1;
    /* Every output value is computed by exactly one task, in a fixed order:
     * the result does not depend on nthreads.  One parallel region for the
     * whole product; tasks write disjoint outputs, so a thread goes on to the
     * next token tile without waiting for the others (nowait). */
#pragma omp parallel num_threads(nthreads) if (nthreads > 1)
    for (int64_t t0 = 0; t0 < T; t0 += T_TILE) {
        int64_t t1 = t0 + T_TILE < T ? t0 + T_TILE : T;
#pragma omp for schedule(static) nowait
        for (int64_t c = 0; c < ntasks; c++) {
            int64_t r0 = c * RS_CHUNK, r1 = r0 + RS_CHUNK < nrs ? r0 + RS_CHUNK : nrs;
            for (int64_t t = t0; t < t1;) {
                int nt = t1 - t >= nt_wide ? nt_wide : 1;
                const int16_t *ar[POAI_MAX_NT];
                const int64_t *st[POAI_MAX_NT], *at[POAI_MAX_NT];
                for (int u = 0; u < nt; u++) {
                    int64_t o = (t + u) * ng * POAI_LANES;
                    ar[u] = qa + (t + u) * K;
                    st[u] = s + o;
                    at[u] = asum + o;
                }
                for (int64_t rs = r0; rs < r1; rs++) {
                    int64_t lanes[POAI_MAX_NT][16];
                    int64_t wo = rs * ng * POAI_LANES;
                    (nt == nt_wide ? wide : one)(wp + rs * ng * cb, ng, ar, psc0 + wo,
                                                 psc1 ? psc1 + wo : 0, pmn ? pmn + wo : 0,
                                                 pmn1 ? pmn1 + wo : 0, st, at, lanes);
                    for (int u = 0; u < nt; u++)
                        poai_packed_finish(lanes[u], g, rs, rows, ysh[t + u], y + (t + u) * rows);
                }
                t += nt;
            }
        }
    }
}

#define GT 16   /* tokens per tile of the portable kernel: one unpacked chunk serves them */

/* One weight chunk unpacked pair-major to int16: wv[k][L*2 + e] = element
 * 2k+e of lane L's block (the layout above): -128..127 (wbits 8) or 0..15
 * (wbits 4). */
static inline void unpack_chunk(const uint8_t *chunk, int wbits, int16_t wv[16][32]) {
    if (wbits == 4) {
        for (int k = 0; k < 8; k++)
            for (int j = 0; j < 32; j++) {
                wv[k][j] = chunk[k * 32 + j] & 0x0F;
                wv[k + 8][j] = chunk[k * 32 + j] >> 4;
            }
    } else {
        for (int k = 0; k < 16; k++)
            for (int j = 0; j < 32; j++) wv[k][j] = (int8_t)chunk[k * 32 + j];
    }
}

/* Token t's quants of group gi broadcast to the 16 lanes, pair-major like
 * the weights: ab[k][L*2 + e] = A[gi*32g + k*2g + 2(L mod g) + e]. */
static inline void broadcast_group(const int16_t *qa, int64_t K, int64_t g, int64_t t, int64_t gi,
                                   int16_t ab[16][32]) {
    const int16_t *ag = qa + t * K + gi * 32 * g;
    for (int k = 0; k < 16; k++)
        for (int j = 0; j < 32; j++) ab[k][j] = ag[k * 2 * g + (j & (2 * g - 1))];
}

/* Portable C over the packed layout: the definition, 16 lanes side by side
 * (plain loops over lanes, which compilers vectorize).  Row sets are
 * independent (each output value is computed by one thread, in a fixed
 * order), so OpenMP over them leaves the bits alone. */
POAI_PACKED_FN(poai_matmul_packed_generic) {
    int64_t K = w->K, rows = w->rows;
    int64_t nb = K / POAI_QBLOCK, g = poai_packed_group(K), ng = nb / g;
    int64_t nrs = poai_packed_rowsets(rows, K), cb = chunk_bytes(w->wbits);
    const int32_t *psc0 = w->psc0, *psc1 = w->psc1, *pmn = w->pmn, *pmn1 = w->pmn1;
    /* The broadcast quants of every (token, group), once for all row sets
     * (T * ng KiB); without that memory each row set broadcasts its own. */
    int16_t (*abc)[16][32] = (int16_t (*)[16][32])malloc((size_t)(T * ng) * sizeof(int16_t[16][32]));
    if (abc) {
#pragma omp parallel for schedule(static) num_threads(nthreads) if (nthreads > 1)
        for (int64_t t = 0; t < T; t++)
            for (int64_t gi = 0; gi < ng; gi++) broadcast_group(qa, K, g, t, gi, abc[t * ng + gi]);
    }
#pragma omp parallel for schedule(static) num_threads(nthreads) if (nthreads > 1)
    for (int64_t rs = 0; rs < nrs; rs++) {
        for (int64_t t0 = 0; t0 < T; t0 += GT) {
            int64_t nt = T - t0 < GT ? T - t0 : GT;
            int64_t lanes[GT][POAI_LANES];
            memset(lanes, 0, sizeof lanes);
            for (int64_t gi = 0; gi < ng; gi++) {
                int16_t wv[16][32];
                unpack_chunk(w->wp + (rs * ng + gi) * cb, w->wbits, wv);
                int64_t wl = (rs * ng + gi) * POAI_LANES;
                for (int64_t u = 0; u < nt; u++) {
                    int64_t t = t0 + u, al = (t * ng + gi) * POAI_LANES;
                    int16_t own[16][32];
                    const int16_t (*ab)[32] = abc ? abc[t * ng + gi] : own;
                    if (!abc) broadcast_group(qa, K, g, t, gi, own);
                    /* element sums of pairs 0-7 (s0) and 8-15 (s1) per (lane, e):
                     * |.| <= 8 * 128 * 32767 < 2^25; i0, i1 add the lane's two:
                     * |.| <= 16 * 128 * 32767 < 2^26 */
                    int32_t s0[32] = {0}, s1[32] = {0}, i0[POAI_LANES], i1[POAI_LANES];
                    for (int k = 0; k < 8; k++)
                        for (int j = 0; j < 32; j++) s0[j] += (int32_t)wv[k][j] * ab[k][j];
                    for (int k = 8; k < 16; k++)
                        for (int j = 0; j < 32; j++) s1[j] += (int32_t)wv[k][j] * ab[k][j];
                    for (int L = 0; L < POAI_LANES; L++) {
                        i0[L] = s0[2 * L] + s0[2 * L + 1];
                        i1[L] = s1[2 * L] + s1[2 * L + 1];
                    }
                    /* asum_lo: the lane's activation sum over elements 0..15 (pairs
                     * 0-7), |.| <= 16 * 32767 < 2^19; only 16-wide offsets need it */
                    int64_t alo[POAI_LANES] = {0};
                    if (pmn1)
                        for (int k = 0; k < 8; k++)
                            for (int L = 0; L < POAI_LANES; L++)
                                alo[L] += ab[k][2 * L] + ab[k][2 * L + 1];
                    for (int L = 0; L < POAI_LANES; L++) {
                        int64_t inner; /* the block's sum_i W q: |inner| <= 2^15 * l1blk < 2^47 */
                        if (psc1) inner = (int64_t)psc0[wl + L] * i0[L] + (int64_t)psc1[wl + L] * i1[L];
                        else inner = (int64_t)psc0[wl + L] * (int64_t)(i0[L] + i1[L]);
                        /* |pmn * asum| < 2^31 * 2^20 = 2^51; the scale term above is at
                         * most 2^31 * 2^26 = 2^57 (a nibble format's d * sum(n q), with the
                         * offset -8d or m folded in here): every partial sum < 2^58 */
                        if (pmn1) /* two halves: each |pmn * asum_half| < 2^31 * 2^19 = 2^50 */
                            inner += (int64_t)pmn[wl + L] * alo[L] +
                                     (int64_t)pmn1[wl + L] * (asum[al + L] - alo[L]);
                        else if (pmn) inner += (int64_t)pmn[wl + L] * asum[al + L];
                        /* inner * 2^s, s in [0, 10]: exact (the lane's partial
                         * sums are bounded like the whole: < 2^63) */
                        lanes[u][L] += (int64_t)((uint64_t)inner << s[al + L]);
                    }
                }
            }
            for (int64_t u = 0; u < nt; u++)
                poai_packed_finish(lanes[u], g, rs, rows, ysh[t0 + u], y + (t0 + u) * rows);
        }
    }
    free(abc);
}

void poai_matmul_pmat(int variant, const int16_t *qa, const int64_t *s, const int64_t *ysh,
                      const int64_t *asum, int64_t T, const poai_pmat *w, int64_t *y,
                      int nthreads) {
    if (nthreads < 1) nthreads = 1;
    if (T <= 0 || w->rows <= 0) return;
    if (variant == POAI_VARIANT_AMX && poai_cpu_has_amx())
        poai_matmul_packed_amx(qa, s, ysh, asum, T, w, y, nthreads);
    else if (variant == POAI_VARIANT_AVX512 && poai_cpu_has_avx512())
        poai_matmul_packed_avx512(qa, s, ysh, asum, T, w, y, nthreads);
    else if (variant == POAI_VARIANT_AVX2 && poai_cpu_has_avx2())
        poai_matmul_packed_avx2(qa, s, ysh, asum, T, w, y, nthreads);
    else if (variant == POAI_VARIANT_NEON && poai_cpu_has_neon())
        poai_matmul_packed_neon(qa, s, ysh, asum, T, w, y, nthreads);
    else
        poai_matmul_packed_generic(qa, s, ysh, asum, T, w, y, nthreads);
}

/* ------------------------------------------------------------------------ */
/* CPU detection                                                             */

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>

static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static int os_saves(uint64_t mask) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    if (!(c & (1u << 27))) return 0; /* OSXSAVE */
    return (xgetbv0() & mask) == mask;
}

static int detect_avx2(void) {
    unsigned a, b, c, d;
    if (!os_saves(0x6)) return 0; /* XMM and YMM state */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (b >> 5) & 1;
}

static int detect_avx512(void) {
    unsigned a, b, c, d;
    if (!os_saves(0xE6)) return 0; /* XMM, YMM, opmask, ZMM_Hi256, Hi16_ZMM */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    int f = (b >> 16) & 1, dq = (b >> 17) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
    int vnni = (c >> 11) & 1;
    return f && dq && bw && vl && vnni;
}

#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

static int detect_amx(void) {
    unsigned a, b, c, d;
    if (!detect_avx512()) return 0;           /* the epilogue's AVX-512 */
    if (!os_saves(0x60000)) return 0;         /* XTILECFG (17) and XTILEDATA (18) */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    if (!((d >> 24) & 1) || !((d >> 25) & 1)) return 0; /* AMX-TILE, AMX-INT8 */
#if defined(__linux__) && defined(SYS_arch_prctl)
    /* Linux hands out the 8 KiB tile state only on request (once per
     * process; threads share it): without it a tile instruction faults. */
    return syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */) == 0;
#else
    return 0; /* no known way to ask this OS for tile state */
#endif
}
#else
static int detect_avx2(void) { return 0; }
static int detect_avx512(void) { return 0; }
static int detect_amx(void) { return 0; }
#endif

/* CPUID can trap to the hypervisor: ask once. */
static int cached_avx2 = -1, cached_avx512 = -1, cached_amx = -1;

int poai_cpu_has_avx2(void) {
    if (cached_avx2 < 0) cached_avx2 = detect_avx2();
    return cached_avx2;
}

int poai_cpu_has_avx512(void) {
    if (cached_avx512 < 0) cached_avx512 = detect_avx512();
    return cached_avx512;
}

int poai_cpu_has_amx(void) {
    if (cached_amx < 0) cached_amx = detect_amx();
    return cached_amx;
}

int poai_cpu_has_neon(void) {
#if defined(__aarch64__)
    return 1; /* Advanced SIMD is mandatory in AArch64 */
#else
    return 0;
#endif
}
