/*
 * poai_forward.c -- the fused native forward pass (see poai_forward.h).
 *
 * The data flow is poai/engine/forward.py's llama branch, step for step,
 * with the same kernels: poai_rmsnorm, poai_quantize_packed + the packed
 * matrix product (one quantization shared by Q/K/V and by gate/up, as
 * ops_simd.matmul_many does), poai_rope, poai_attention_batch and
 * poai_silu_mul.  Only the buffers differ: they are the caller's, reused
 * for every layer.  No floating point anywhere.
 */
#include "poai_forward.h"

#include <string.h>

#include "poai_kernels.h"

#define BITS31 31
#define BITS24 24

/* 1 if every |x[i]| < 2^bits (the reference's check_range(x, bits)). */
#define in_range(x, n, bits) poai_in_range((x), (n), (bits))

/* y_j = x times each matrix ws[j] (all K = ws[0]->K wide), x quantized once. */
static void matmuls(int variant, const int64_t *x, int64_t N, const poai_pmat *const *ws,
                    int64_t *const *ys, int n, const poai_fw_buffers *b, int nthreads) {
    int64_t K = ws[0]->K;
    poai_quantize_packed(variant, x, N, K, b->qa, b->qs, b->qy, b->qsum, nthreads);
    for (int j = 0; j < n; j++)
        poai_matmul_pmat(variant, b->qa, b->qs, b->qy, b->qsum, N, ws[j], ys[j], nthreads);
}

int poai_forward_llama(const poai_fw_model *m, int variant, int64_t *x, int64_t B, int64_t T,
                       const int64_t *cos_t, const int64_t *sin_t, const int64_t *sel_layer,
                       const int64_t *sel_head, int64_t n_sel, int64_t *probs,
                       const poai_fw_buffers *b, int nthreads) {
    const int64_t N = B * T, d = m->d, ff = m->ff, H = m->H, Hkv = m->Hkv, hd = m->hd;
    int64_t *pout = probs;
    /* AVX2 norms, RoPE, SwiGLU, attention (an explicit test: NEON's id is larger) */
    const int vec = variant == POAI_VARIANT_AVX2 || variant == POAI_VARIANT_AVX512 ||
                    variant == POAI_VARIANT_AMX;
    for (int64_t li = 0; li < m->n_layer; li++) {
        const poai_fw_layer *L = &m->layers[li];

        /* --- attention block */
        if (!in_range(x, N * d, BITS31)) return POAI_FW_RANGE;            /* norm input */
        (vec ? poai_rmsnorm_avx2 : poai_rmsnorm)(x, N, d, L->attn_norm, m->eps_q32, b->h);
        if (!in_range(b->h, N * d, BITS31)) return POAI_FW_RANGE;         /* matmul input */
        {
            const poai_pmat *ws[3] = {&L->wq, &L->wk, &L->wv};
            int64_t *ys[3] = {b->q, b->k, b->v};
            matmuls(variant, b->h, N, ws, ys, 3, b, nthreads);
        }
        if (!in_range(b->q, N * H * hd, BITS31) || !in_range(b->k, N * Hkv * hd, BITS31))
            return POAI_FW_RANGE;                                         /* rope input */
        /* RoPE: every sequence of the batch starts at position 0 */
        for (int64_t s = 0; s < B; s++) {
            (vec ? poai_rope_avx2 : poai_rope)(b->q + s * T * H * hd, T, H, hd, m->n_rot, cos_t, sin_t);
            (vec ? poai_rope_avx2 : poai_rope)(b->k + s * T * Hkv * hd, T, Hkv, hd, m->n_rot, cos_t,
                                               sin_t);
        }
        if (!in_range(b->q, N * H * hd, BITS24) || !in_range(b->k, N * Hkv * hd, BITS24) ||
            !in_range(b->v, N * Hkv * hd, BITS31))
            return POAI_FW_RANGE;                                         /* attention inputs */
        /* this layer's selected heads: a run of sel_layer == li */
        int64_t first = 0, n_l = 0;
        for (int64_t i = 0; i < n_sel; i++)
            if (sel_layer[i] == li) {
                if (!n_l) first = i;
                n_l++;
            }
        int st = vec
            ? poai_attention_batch_avx2(b->q, b->k, b->v, B, T, H, Hkv, hd, m->inv_sqrt_hd_q30,
                                        m->exp_table, m->log2e_q30, b->a,
                                        n_l ? sel_head + first : 0, n_l, n_l ? pout : 0, nthreads)
            : poai_attention_batch(b->q, b->k, b->v, B, T, H, Hkv, hd, m->inv_sqrt_hd_q30,
                                   m->exp_table, m->log2e_q30, b->a, n_l ? sel_head + first : 0,
                                   n_l, n_l ? pout : 0, b->att, nthreads);
        if (st & 2) return POAI_FW_NOMEM;
        if (st) return POAI_FW_RANGE;                                     /* attention score */
        pout += n_l * B * T * T;
        if (!in_range(b->a, N * d, BITS31)) return POAI_FW_RANGE;         /* matmul input */
        {
            const poai_pmat *ws[1] = {&L->wo};
            int64_t *ys[1] = {b->o};
            matmuls(variant, b->a, N, ws, ys, 1, b, nthreads);
        }
        /* residual: |x|, |o| < 2^63 / 2 is all int64 needs; the next norm checks 2^31 */
        poai_add_inplace(x, b->o, N * d);

        /* --- feed-forward block, POAI_FW_FFN_CHUNK tokens at a time: every
         * step is per token (or per element), so the bits are those of one
         * pass over all N, and g, u hold a chunk instead of N x ff.  Any range
         * failure discards the whole pass, so checking chunk by chunk reports
         * the same outcome. */
        if (!in_range(x, N * d, BITS31)) return POAI_FW_RANGE;            /* norm input */
        (vec ? poai_rmsnorm_avx2 : poai_rmsnorm)(x, N, d, L->ffn_norm, m->eps_q32, b->h);
        if (!in_range(b->h, N * d, BITS31)) return POAI_FW_RANGE;         /* matmul input */
        for (int64_t t0 = 0; t0 < N; t0 += POAI_FW_FFN_CHUNK) {
            int64_t n = N - t0 < POAI_FW_FFN_CHUNK ? N - t0 : POAI_FW_FFN_CHUNK;
            {
                const poai_pmat *ws[2] = {&L->wg, &L->wu};
                int64_t *ys[2] = {b->g, b->u};
                matmuls(variant, b->h + t0 * d, n, ws, ys, 2, b, nthreads);
            }
            if (!in_range(b->g, n * ff, BITS31) || !in_range(b->u, n * ff, BITS31))
                return POAI_FW_RANGE;                                     /* ffn gate / up */
            (vec ? poai_silu_mul_avx2 : poai_silu_mul)(
                b->g, b->u, n * ff, m->exp_table, m->log2e_q30, b->g, nthreads);
            if (!in_range(b->g, n * ff, BITS31)) return POAI_FW_RANGE;    /* matmul input */
            {
                const poai_pmat *ws[1] = {&L->wd};
                int64_t *ys[1] = {b->o + t0 * d};
                matmuls(variant, b->g, n, ws, ys, 1, b, nthreads);
            }
        }
        poai_add_inplace(x, b->o, N * d);
    }
    if (!in_range(x, N * d, BITS31)) return POAI_FW_RANGE;                /* norm input */
    (vec ? poai_rmsnorm_avx2 : poai_rmsnorm)(x, N, d, m->out_norm, m->eps_q32, b->h);
    memcpy(x, b->h, (size_t)(N * d) * sizeof(int64_t));
    return POAI_FW_OK;
}
