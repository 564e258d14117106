/*
 * poai_packed.h -- the SIMD matrix product: packed layouts and variants.
 *
 * The arithmetic is docs/ENGINE.md's "Matrix product", unchanged; only the
 * order of the exact integer sums differs (any order gives the same value),
 * and every per-block rounding is the definition's.  Variants:
 *
 *   poai_matmul_packed_generic  portable C on the packed layout
 *   poai_matmul_packed_avx2     AVX2 (vpmaddwd), target attribute
 *   poai_matmul_packed_avx512   AVX-512 F/BW/DQ/VL + VNNI (vpdpwssd)
 *
 * Packed layout ("lane-interleaved").  A SIMD accumulator has 16 int32
 * lanes; each lane accumulates the dot product of one (row, 32-block) pair,
 * so no horizontal sums are needed.  With nb = K/32 blocks per row,
 *
 *     g = gcd(nb, 16) blocks per group,  P = 16 / g rows per row set,
 *
 * lane L = p*g + l holds row (set*P + p) and block (group*g + l).  Rows are
 * padded with zero rows to a multiple of P.  For row set rs and group gi,
 * the weights form one 512-byte chunk: for pair k (elements 2k, 2k+1 of
 * each block) 16 lanes x 2 int8,
 *
 *     W[(rs*ng + gi)*512 + k*32 + L*2 + e] = w[row][ (group*g + l)*32 + 2k + e ]
 *
 * Activation quants of one token are int16 in the same order over blocks
 * only: A[gi*32g + k*2g + 2l + e]; a kernel broadcasts those 2g values to the
 * P row positions.  Per-lane weight data (sc0, sc1, mn) are int32
 * [nrs][ng][16]; per-lane activation data (the rounding shift s = 17 - e,
 * its bias rnd = 2^(s-1) or 0, asum) are int64 [T][ng][16] (the block's
 * value repeated for every p).
 */
#ifndef POAI_PACKED_H
#define POAI_PACKED_H

#include <stdint.h>

#define POAI_LANES 16
#define POAI_MAX_NT 8   /* most tokens one inner-kernel call takes */

/* Blocks per group g, rows per row set P and row sets for a matrix. */
int64_t poai_packed_group(int64_t K);
int64_t poai_packed_rowsets(int64_t rows, int64_t K);

/* Pack rows x K int8 quants and the per-32-block int32 weight data.
 * q [rows*K]; sc0, sc1 (may be NULL), mn (may be NULL): [rows * K/32].
 * Outputs: wp [nrs*ng*512], psc0, psc1, pmn [nrs*ng*16] (NULL if the input is). */
void poai_pack_weights(const int8_t *q, const int32_t *sc0, const int32_t *sc1,
                       const int32_t *mn, int64_t rows, int64_t K, int8_t *wp,
                       int32_t *psc0, int32_t *psc1, int32_t *pmn);

/* Quantize x [T, K] (docs/ENGINE.md) into packed int16 quants qa [T*K] and
 * per-lane s, rnd, asum [T * ng * 16] (int64). */
void poai_quantize_packed(const int64_t *x, int64_t T, int64_t K, int16_t *qa,
                          int64_t *s, int64_t *rnd, int64_t *asum, int nthreads);

/* y[T, rows] from packed quants and packed weights; nthreads >= 1 splits
 * the row sets (the result does not depend on it).  psc1 is non-NULL only
 * for 16-wide weight blocks (then it scales elements 16..31 of each block
 * and psc0 elements 0..15); pmn only for weights with offsets. */
typedef void (*poai_matmul_packed_fn)(const int16_t *qa, const int64_t *s,
                                      const int64_t *rnd, const int64_t *asum, int64_t T,
                                      int64_t K, const int8_t *wp, const int32_t *psc0,
                                      const int32_t *psc1, const int32_t *pmn, int64_t rows,
                                      int64_t *y, int nthreads);

#define POAI_PACKED_FN(name)                                                                 \
    void name(const int16_t *qa, const int64_t *s, const int64_t *rnd,                       \
              const int64_t *asum, int64_t T, int64_t K, const int8_t *wp,                   \
              const int32_t *psc0, const int32_t *psc1, const int32_t *pmn, int64_t rows,    \
              int64_t *y, int nthreads)

POAI_PACKED_FN(poai_matmul_packed_generic);
POAI_PACKED_FN(poai_matmul_packed_avx2);
POAI_PACKED_FN(poai_matmul_packed_avx512);

/* A variant's inner kernel: one row set (its weights w, ng groups) against
 * nt tokens (a[u], s[u], rnd[u], asum[u] for u < nt); writes the 16 int64
 * lane sums of each token to lanes[u]. */
typedef void (*poai_rowset_fn)(const int8_t *w, int64_t ng, const int16_t *const *a,
                               const int32_t *sc0, const int32_t *sc1, const int32_t *mn,
                               const int64_t *const *s, const int64_t *const *rnd,
                               const int64_t *const *asum, int64_t (*lanes)[16]);

/* The shared driver of the SIMD variants: token tiles, OpenMP over chunks
 * of row sets, `wide` (taking nt_wide tokens, at most POAI_MAX_NT) and `one` (1 token)
 * inner kernels for the matrix's group size. */
void poai_packed_drive(poai_rowset_fn wide, int nt_wide, poai_rowset_fn one, const int16_t *qa,
                       const int64_t *s, const int64_t *rnd, const int64_t *asum, int64_t T,
                       int64_t K, const int8_t *wp, const int32_t *psc0, const int32_t *psc1,
                       const int32_t *pmn, int64_t rows, int64_t *y, int nthreads);

/* Sum the 16 int64 lane terms of one row set into its P row results:
 * y_row = rshift_round(sum of the row's g lanes, 7). */
void poai_packed_finish(const int64_t *lanes, int64_t g, int64_t rs, int64_t rows, int64_t *yrow);

/* One weight matrix in the packed layout (the interface other C code uses). */
typedef struct {
    int64_t rows, K;
    int wbits;                         /* 8: one int8 per weight */
    const uint8_t *wp;                 /* packed weights */
    const int32_t *psc0, *psc1, *pmn;  /* per-lane weight data; psc1 / pmn may be NULL */
} poai_pmat;

#define POAI_VARIANT_GENERIC 0
#define POAI_VARIANT_AVX2 1
#define POAI_VARIANT_AVX512 2

/* y [T, w->rows] = packed activations (poai_quantize_packed of a [T, w->K]
 * input) times w, with the given variant (the caller checked it is usable). */
void poai_matmul_pmat(int variant, const int16_t *qa, const int64_t *s, const int64_t *rnd,
                      const int64_t *asum, int64_t T, const poai_pmat *w, int64_t *y,
                      int nthreads);

/* CPU support, from CPUID/XGETBV (cached): 1 if the variant can run here. */
int poai_cpu_has_avx2(void);
int poai_cpu_has_avx512(void);

#endif
