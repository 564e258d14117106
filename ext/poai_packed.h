/*
 * poai_packed.h -- the matrix product on the one in-memory weight layout
 * every native kernel reads (portable C, AVX2, AVX-512, NEON).
 *
 * The arithmetic is docs/ENGINE.md's "Matrix product": every block's
 * contribution is an exact integer shifted left by at most 10, the sums are
 * exact (any order gives the same value) and each output is rounded once.  Variants
 * (poai_matmul_pmat's `variant`):
 *
 *   POAI_VARIANT_GENERIC (0)  portable C
 *   POAI_VARIANT_AVX2    (1)  AVX2 (vpmaddwd), target attribute
 *   POAI_VARIANT_AVX512  (2)  AVX-512 F/BW/DQ/VL + VNNI (vpdpwssd)
 *   POAI_VARIANT_NEON    (3)  AArch64 NEON (vmlal_s16), compiled on aarch64 only
 *   POAI_VARIANT_AMX     (4)  AMX-INT8 tiles (TDPBSSD/TDPBUSD) + AVX-512 epilogue
 *                             (ext/poai_amx.c; Linux x86-64 only)
 *
 * Packed layout ("lane-interleaved").  A SIMD accumulator has 16 int32
 * lanes; each lane accumulates the dot product of one (row, 32-block) pair,
 * so no horizontal sums are needed.  With nb = K/32 blocks per row,
 *
 *     g = gcd(nb, 16) blocks per group,  P = 16 / g rows per row set,
 *
 * lane L = p*g + l holds row (set*P + p) and block (group*g + l).  Rows are
 * padded with zero rows to a multiple of P.  w(L, i) below is element i of
 * that lane's block (the stored quant: int8 for wbits 8, 0..15 for wbits 4).
 *
 * wbits 8: one 512-byte chunk per (row set rs, group gi); pair k (elements
 * 2k, 2k+1 of each block) is 16 lanes x 2 int8:
 *     W[(rs*ng + gi)*512 + k*32 + L*2 + e] = w(L, 2k + e)          k < 16
 * wbits 4: one 256-byte chunk; byte k*32 + L*2 + e (k < 8) holds pair k in
 * its low nibble and pair k+8 in its high nibble:
 *     W[(rs*ng + gi)*256 + k*32 + L*2 + e] = w(L, 2k+e) | w(L, 16+2k+e) << 4
 * so one 32-byte load, AND 0x0F and a 4-bit shift give two pairs' vectors.
 * Nibble weights are unsigned: a format whose quants are signed 4-bit
 * (Q4_0, q = n - 8) is stored as n with the exact offset pmn = -8 * scale.
 *
 * Activation quants of one token are int16 in the same order over blocks
 * only: A[gi*32g + k*2g + 2l + e]; a kernel broadcasts those 2g values to the
 * P row positions.  Per-lane weight data (psc0, psc1, pmn) are int32
 * [nrs][ng][16]; per-lane activation data (the left shift s = e - B in
 * [0, 10] and asum) are int64 [T][ng][16] (the block's value repeated for
 * every p); ysh [T] is each token's final right shift 24 - B.
 */
#ifndef POAI_PACKED_H
#define POAI_PACKED_H

#include <stdint.h>

#define POAI_LANES 16
#define POAI_MAX_NT 8   /* most tokens one inner-kernel call takes */

#define POAI_VARIANT_GENERIC 0
#define POAI_VARIANT_AVX2 1
#define POAI_VARIANT_AVX512 2
#define POAI_VARIANT_NEON 3
#define POAI_VARIANT_AMX 4

/* One weight matrix, the layout every native kernel reads. */
typedef struct {
    int64_t rows, K;
    int wbits;              /* 8: one int8 per weight; 4: two nibbles per byte */
    const uint8_t *wp;      /* packed weights [nrs * ng * 64 * wbits] bytes */
    /* per-lane weight data [nrs * ng * 16]: psc0 scales elements 0..15 of
     * each block and psc1 elements 16..31 (psc1 non-NULL only for 16-wide
     * weight blocks; else psc0 scales all 32); pmn the block offset or NULL.
     * pmn1 (only with psc1 and pmn: 16-wide blocks with offsets, Q2_K) is
     * the offset of elements 16..31, and pmn then that of 0..15; a kernel
     * multiplies them by the activation sums of the two halves, asum_lo
     * (summed in the kernel from the quants, |.| <= 16 * 32767 < 2^19) and
     * asum - asum_lo. */
    const int32_t *psc0, *psc1, *pmn, *pmn1;
} poai_pmat;

/* Blocks per group g, rows per row set P and row sets for a matrix. */
int64_t poai_packed_group(int64_t K);
int64_t poai_packed_rowsets(int64_t rows, int64_t K);

/* Quantize x [T, K] (docs/ENGINE.md) into packed int16 quants qa [T*K],
 * per-lane s, asum [T * ng * 16] and per-token ysh [T] (int64).  Any variant
 * but POAI_VARIANT_GENERIC runs the same C compiled for AVX2 where the CPU
 * has it (same bits: integer arithmetic only). */
void poai_quantize_packed(int variant, const int64_t *x, int64_t T, int64_t K, int16_t *qa,
                          int64_t *s, int64_t *ysh, int64_t *asum, int nthreads);

/* y [T, w->rows] = quantized activations (poai_quantize_packed of x [T, w->K])
 * times w; nthreads >= 1 splits the row sets (the result does not depend on
 * it).  A SIMD variant this CPU lacks runs as POAI_VARIANT_GENERIC (same
 * bits); an unknown variant too. */
void poai_matmul_pmat(int variant, const int16_t *qa, const int64_t *s, const int64_t *ysh,
                      const int64_t *asum, int64_t T, const poai_pmat *w, int64_t *y,
                      int nthreads);

/* The variants themselves (callers check the CPU first). */
#define POAI_PACKED_FN(name)                                                                 \
    void name(const int16_t *qa, const int64_t *s, const int64_t *ysh,                       \
              const int64_t *asum, int64_t T, const poai_pmat *w, int64_t *y, int nthreads)

POAI_PACKED_FN(poai_matmul_packed_generic);
POAI_PACKED_FN(poai_matmul_packed_avx2);
POAI_PACKED_FN(poai_matmul_packed_avx512);
POAI_PACKED_FN(poai_matmul_packed_neon);
POAI_PACKED_FN(poai_matmul_packed_amx);
/* The amx variant runs products of fewer tokens than this on the AVX-512
 * kernel (same bits; faster there); 16 unless a test lowers it. */
extern int poai_amx_min_tokens;

/* A variant's inner kernel: one row set (its weight chunks w, ng groups)
 * against nt tokens (a[u], s[u], asum[u] for u < nt); writes the 16 int64
 * lane sums of each token to lanes[u].  sc1, mn and mn1 are NULL where the
 * matrix has no psc1, pmn, pmn1. */
typedef void (*poai_rowset_fn)(const uint8_t *w, int64_t ng, const int16_t *const *a,
                               const int32_t *sc0, const int32_t *sc1, const int32_t *mn,
                               const int32_t *mn1, const int64_t *const *s,
                               const int64_t *const *asum, int64_t (*lanes)[16]);

/* The shared driver of the SIMD variants: token tiles, OpenMP over chunks
 * of row sets, `wide` (taking nt_wide tokens, at most POAI_MAX_NT) and `one` (1 token)
 * inner kernels for the matrix's group size and weight width. */
void poai_packed_drive(poai_rowset_fn wide, int nt_wide, poai_rowset_fn one, const int16_t *qa,
                       const int64_t *s, const int64_t *ysh, const int64_t *asum, int64_t T,
                       const poai_pmat *w, int64_t *y, int nthreads);

/* Sum the 16 int64 lane terms of one row set into its P row results:
 * y_row = rshift_round(sum of the row's g lanes, ysh), ysh in [17, 49]. */
void poai_packed_finish(const int64_t *lanes, int64_t g, int64_t rs, int64_t rows, int64_t ysh,
                        int64_t *yrow);

/* CPU support, from CPUID/XGETBV (cached): 1 if the variant can run here.
 * NEON (Advanced SIMD) is part of every AArch64 CPU: 1 on aarch64, else 0.
 * AMX: CPUID AMX-TILE and AMX-INT8, the OS saving tile state (XCR0 bits 17
 * and 18), the AVX-512 of poai_cpu_has_avx512 (its epilogue) and, on Linux,
 * the process's tile-data permission (arch_prctl ARCH_REQ_XCOMP_PERM,
 * requested on the first call); anything missing gives 0, never a fault. */
int poai_cpu_has_avx2(void);
int poai_cpu_has_avx512(void);
int poai_cpu_has_neon(void);
int poai_cpu_has_amx(void);

#endif
