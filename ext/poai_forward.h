/*
 * poai_forward.h -- the fused native forward pass of a llama-family model.
 *
 * Whole layers in C (norm -> Q/K/V -> RoPE -> attention -> output ->
 * residual -> norm -> gate/up -> SiLU * up -> down -> residual), on buffers
 * the caller allocates once per model and batch shape (poai_fw_buffers);
 * no per-op allocation.  Every step is the scalar kernel of poai_kernels.c
 * or the packed matrix product of poai_packed.h, so the bits are those of
 * the op-by-op path (poai/engine/forward.py), which stays the readable
 * definition; the caller checks weight bounds (l1blk) once per model.
 *
 * Every input range the op-by-op path checks is checked here too, in the
 * same order.  On a violation the pass stops and returns its code (below);
 * the caller then re-runs the op-by-op path, which raises the identical
 * EngineRangeError.  Nothing is written to the outputs in that case.
 */
#ifndef POAI_FORWARD_H
#define POAI_FORWARD_H

#include <stdint.h>

#include "poai_packed.h"

typedef struct {
    const int64_t *attn_norm, *ffn_norm;   /* [d] Q24 gains */
    poai_pmat wq, wk, wv, wo, wg, wu, wd;
} poai_fw_layer;

typedef struct {
    int64_t n_layer, d, ff, H, Hkv, hd, n_rot;
    int64_t eps_q32, inv_sqrt_hd_q30, log2e_q30;
    const int64_t *exp_table;              /* 1025 entries, tables.exp2_table */
    const poai_fw_layer *layers;
    const int64_t *out_norm;               /* [d] Q24 */
} poai_fw_model;

/* Tokens per pass of the feed-forward block (its g, u buffers hold this many). */
#define POAI_FW_FFN_CHUNK 64

/* Work buffers for N = B*T tokens, C = min(N, POAI_FW_FFN_CHUNK) (sizes in
 * elements):
 *   h, a, o: N*d; q: N*H*hd; k, v: N*Hkv*hd; g, u: C*ff;
 *   a may share h's memory and o q's (q then N*max(H*hd, d)): h is dead
 *   from the Q/K/V products to the next norm, a after the output product,
 *   q after attention and o after each residual add;
 *   qa: max(N*d, C*ff) int16; qs, qsum: max(N*lanes(d), C*lanes(ff)) int64,
 *   qy: N, where lanes(K) = 16 * (K/32) / poai_packed_group(K);
 *   att: nthreads * (2T + hd). */
typedef struct {
    int64_t *h, *q, *k, *v, *a, *o, *g, *u;
    int16_t *qa;
    int64_t *qs, *qy, *qsum;
    int64_t *att;
} poai_fw_buffers;

/* Range codes (0: success). */
#define POAI_FW_OK 0
#define POAI_FW_RANGE 1   /* some checked value left its proven range */
#define POAI_FW_NOMEM 2   /* a scratch allocation failed */

/* Run every layer and the final norm over x [B*T, d] (int64 Q16, in place:
 * on success x holds the final normalized hidden states).  cos/sin: [T,
 * n_rot/2] Q30 rows of positions 0..T-1.  sel_layer/sel_head [n_sel]: the
 * (layer, query head) pairs whose probability rows are wanted, grouped by
 * layer in ascending layer order; probs receives, layer after layer, one
 * block [B][n_l][T][T] per layer with n_l > 0 selected heads (in sel order);
 * it may be NULL when n_sel = 0. */
int poai_forward_llama(const poai_fw_model *m, int variant, int64_t *x, int64_t B, int64_t T,
                       const int64_t *cos_t, const int64_t *sin_t, const int64_t *sel_layer,
                       const int64_t *sel_head, int64_t n_sel, int64_t *probs,
                       const poai_fw_buffers *buf, int nthreads);

#endif
