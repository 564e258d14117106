/*
 * poai_kernels.c -- portable scalar C kernels, bit-identical to
 * poai/engine/ops_reference.py.  See that file and docs/ENGINE.md for the
 * definitions; each bound is repeated here where the accumulator lives.
 *
 * Rounding everywhere: nearest, ties toward +infinity:
 *   rshift_round(x, s) = (x + 2^(s-1)) >> s       (arithmetic shift)
 *   div_round(a, b)    = floor((2a + b) / (2b))   (b >= 1)
 * No floating point is used anywhere in this file.
 */
#include "poai_kernels.h"

#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define ACT_FRAC 16
#define UNIT_FRAC 30
#define SCALE_FRAC 24
#define EXP2_INTERP_BITS 6
#define EXP_CLAMP_Q16 (-((int64_t)64 << ACT_FRAC))

int poai_arith_shift_ok(void) {
    volatile int64_t minus_three = -3;
    return (minus_three >> 1) == -2;
}

static inline int64_t rshift_round(int64_t x, int s) {
    if (s <= 0) return x;
    return (x + ((int64_t)1 << (s - 1))) >> s;
}

static inline int64_t floor_div(int64_t a, int64_t b) { /* b > 0 */
    int64_t q = a / b;
    if ((a % b != 0) && (a < 0)) q--;
    return q;
}

static inline int64_t div_round(int64_t a, int64_t b) {
    return floor_div(2 * a + b, 2 * b);
}

static inline int bit_length(uint64_t x) {
    return x ? 64 - __builtin_clzll(x) : 0;
}

static inline int64_t iabs64(int64_t x) { return x < 0 ? -x : x; }

/* floor(sqrt(x)) for 0 <= x < 2^62, digit by digit (as isqrt_array). */
static int64_t isqrt62(int64_t x) {
    int64_t res = 0, bit = (int64_t)1 << 60;
    for (int i = 0; i < 31; i++) {
        int64_t t = res + bit;
        if (x >= t) {
            x -= t;
            res = (res >> 1) + bit;
        } else {
            res >>= 1;
        }
        bit >>= 2;
    }
    return res;
}

/* ------------------------------------------------------------------------ */
/* division-free reciprocal (docs/ENGINE.md "Reciprocal")                     */

/* RT[i] = div_round(2^60, 2^30 + (2i+1) 2^21), i < 256; RT[256] = 2^29:
 * the same integers as poai/engine/tables.py:recip_table (tested equal).
 * Filled once by poai_kernels_init (module import), read-only after. */
static int64_t recip_tab[257];

void poai_kernels_init(void) {
    for (int i = 0; i < 256; i++) {
        int64_t m = ((int64_t)1 << 30) + (int64_t)(2 * i + 1) * ((int64_t)1 << 21);
        /* 2^61 + m < 2^63: exact */
        recip_tab[i] = (((int64_t)1 << 61) + m) / (2 * m);
    }
    recip_tab[256] = (int64_t)1 << 29;
}

const int64_t *poai_recip_table(void) { return recip_tab; }

int64_t poai_recip_q30(int64_t d) {
    /* d in [2^30, 2^31]: seed within 2^-9, then two Newton steps */
    int64_t r = recip_tab[(d - ((int64_t)1 << 30)) >> 22];
    for (int step = 0; step < 2; step++) {
        int64_t err = ((int64_t)1 << 60) - d * r;     /* |d*r| < 2^62, |err| < 2^52 */
        r += rshift_round(r * rshift_round(err, 29), 31); /* |r * e'| < 2^53 */
    }
    return r; /* in [2^29, 2^30] */
}

int64_t poai_recip_normalize(int64_t s, int *sh) {
    *sh = bit_length((uint64_t)s) - 31;
    return rshift_round(s, *sh);
}

/* ------------------------------------------------------------------------ */
/* activation quantization                                                   */

void poai_quantize_act(const int64_t *x, int64_t T, int64_t K, int16_t *q, int64_t *e) {
    int64_t nb = K / POAI_QBLOCK;
    for (int64_t t = 0; t < T; t++) {
        const int64_t *xt = x + t * K;
        int emax = -15;
        for (int64_t b = 0; b < nb; b++) {
            int e0 = poai_block_exponent(xt + b * POAI_QBLOCK);
            emax = e0 > emax ? e0 : emax;
        }
        /* no block more than POAI_EXP_SPREAD below the token's largest */
        for (int64_t b = 0; b < nb; b++) {
            int e0 = poai_block_exponent(xt + b * POAI_QBLOCK);
            int eb = e0 > emax - POAI_EXP_SPREAD ? e0 : emax - POAI_EXP_SPREAD;
            poai_quantize_block(xt + b * POAI_QBLOCK, eb, q + t * K + b * POAI_QBLOCK);
            e[t * nb + b] = eb;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* normalization                                                             */

int64_t poai_norm_multiplier(int64_t sumsq, int64_t n, int t, int64_t eps_q32, int *shift) {
    int64_t v = ((sumsq / n) << (2 * t)) + eps_q32; /* < 2^63 */
    int k = 62 - bit_length((uint64_t)v);
    k -= k & 1;
    int64_t u = k >= 0 ? (v << k) : (v >> -k);
    int64_t r = isqrt62(u); /* in [2^30, 2^31) when v > 0 */
    *shift = 38 - k / 2;    /* in [8, 39] */
    return v == 0 ? 0 : poai_recip_q30(r < ((int64_t)1 << 30) ? ((int64_t)1 << 30) : r);
}

static void normalize_row(const int64_t *x, int64_t n, const int64_t *g, int64_t eps_q32,
                          int64_t *y) {
    int64_t amax = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t a = iabs64(x[i]);
        if (a > amax) amax = a;
    }
    int t = bit_length((uint64_t)amax) - 24;
    if (t < 0) t = 0;
    int64_t sumsq = 0; /* |x'| <= 2^24, n < 2^14: < 2^62 */
    for (int64_t i = 0; i < n; i++) {
        int64_t xs = rshift_round(x[i], t);
        sumsq += xs * xs;
    }
    int shift;
    int64_t mult = poai_norm_multiplier(sumsq, n, t, eps_q32, &shift);
    for (int64_t i = 0; i < n; i++) {
        int64_t t1 = rshift_round(x[i] * mult, 30); /* |x| < 2^31, M <= 2^30: < 2^61 */
        y[i] = rshift_round(t1 * g[i], shift);      /* |t1| <= |x|, |g| < 2^31: < 2^62 */
    }
}

void poai_rmsnorm(const int64_t *x, int64_t T, int64_t n, const int64_t *g,
                  int64_t eps_q32, int64_t *y) {
    for (int64_t t = 0; t < T; t++) normalize_row(x + t * n, n, g, eps_q32, y + t * n);
}

void poai_layernorm(const int64_t *x, int64_t T, int64_t n, const int64_t *g,
                    const int64_t *b, int64_t eps_q32, int64_t *y) {
    for (int64_t t = 0; t < T; t++) {
        const int64_t *row = x + t * n;
        int64_t *out = y + t * n;
        int64_t sum = 0; /* |x| < 2^30, n < 2^14 */
        for (int64_t i = 0; i < n; i++) sum += row[i];
        int64_t mean = div_round(sum, n);
        for (int64_t i = 0; i < n; i++) out[i] = row[i] - mean;
        normalize_row(out, n, g, eps_q32, out);
        for (int64_t i = 0; i < n; i++) out[i] += rshift_round(b[i], 8);
    }
}

/* ------------------------------------------------------------------------ */
/* exp, sigmoid, SiLU, GELU                                                  */

int64_t poai_exp_q30(int64_t z, const int64_t *table, int64_t log2e_q30) {
    int64_t zc = z < EXP_CLAMP_Q16 ? EXP_CLAMP_Q16 : z;
    int64_t w = rshift_round(zc * log2e_q30, UNIT_FRAC); /* |zc * L| < 2^53 */
    /* zc >= -2^22 gives w > -2^23: n = ceil(-w / 2^16) in [0, 93] */
    int64_t n = (-w + ((int64_t)1 << ACT_FRAC) - 1) >> ACT_FRAC;
    int64_t f = w + (n << ACT_FRAC); /* in [0, 2^16) */
    int64_t idx = f >> EXP2_INTERP_BITS;
    int64_t frac = f & ((1 << EXP2_INTERP_BITS) - 1);
    int64_t lo = table[idx];
    /* table step < 2^31 (entries in [2^30, 2^31]), frac < 2^6: product < 2^37;
     * v in [2^30, 2^31] */
    int64_t v = lo + rshift_round((table[idx + 1] - lo) * frac, EXP2_INTERP_BITS);
    return rshift_round(v, (int)(n < 62 ? n : 62)); /* shift in [0, 62]: result in [0, 2^30] */
}

/* sigmoid(x) in Q30: recip(2^30 + exp(-|x|)) = sigmoid(|x|), mirrored for x < 0 */
static inline int64_t sigmoid_q30(int64_t x, const int64_t *table, int64_t log2e_q30) {
    int64_t e = poai_exp_q30(-iabs64(x), table, log2e_q30);   /* in [0, 2^30] */
    int64_t pos = poai_recip_q30(((int64_t)1 << UNIT_FRAC) + e); /* in [2^29, 2^30] */
    return x >= 0 ? pos : ((int64_t)1 << UNIT_FRAC) - pos;
}

void poai_silu_mul(const int64_t *gate, const int64_t *up, int64_t n,
                   const int64_t *table, int64_t log2e_q30, int64_t *out, int nthreads) {
#pragma omp parallel for schedule(static) num_threads(nthreads) if (nthreads > 1 && n >= 4096)
    for (int64_t i = 0; i < n; i++) {
        int64_t g = gate[i];
        /* |g| < 2^31 (checked), sigmoid in [0, 2^30]: |g * sig| < 2^61, |silu| <= |g| */
        int64_t silu = rshift_round(g * sigmoid_q30(g, table, log2e_q30), UNIT_FRAC);
        out[i] = rshift_round(silu * up[i], ACT_FRAC); /* |silu|, |up| < 2^31: < 2^62 */
    }
}

void poai_gelu(const int64_t *x, int64_t n, const int64_t *table, int64_t log2e_q30,
               int64_t cubic_q30, int64_t scale_q30, int64_t *out) {
    const int64_t clamp = (int64_t)16 << ACT_FRAC;
    for (int64_t i = 0; i < n; i++) {
        int64_t xv = x[i];
        int64_t xc = xv > clamp ? clamp : (xv < -clamp ? -clamp : xv);
        /* |xc| <= 2^20 (Q16 of 16): xc^2 <= 2^40, x2 <= 2^24, x2 * xc <= 2^44, x3 <= 2^28 */
        int64_t x2 = rshift_round(xc * xc, ACT_FRAC);
        int64_t x3 = rshift_round(x2 * xc, ACT_FRAC);
        /* x3 * C1 < 2^28 * 2^26 = 2^54; inner < 2^20 + 2^24 < 2^25; inner * C2 < 2^56 */
        int64_t inner = xc + rshift_round(x3 * cubic_q30, UNIT_FRAC);
        int64_t u = rshift_round(inner * scale_q30, UNIT_FRAC);
        /* |x| < 2^31 (checked), sigmoid <= 2^30: |x * sig| < 2^61 */
        out[i] = rshift_round(xv * sigmoid_q30(u, table, log2e_q30), UNIT_FRAC);
    }
}

/* ------------------------------------------------------------------------ */
/* rotary position embedding                                                 */

void poai_rope(int64_t *x, int64_t T, int64_t H, int64_t hd, int64_t n_rot,
               const int64_t *cos_t, const int64_t *sin_t) {
    int64_t half = n_rot / 2;
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < H; h++) {
            int64_t *v = x + (t * H + h) * hd;
            for (int64_t i = 0; i < half; i++) {
                int64_t a = v[2 * i], b = v[2 * i + 1];
                int64_t c = cos_t[t * half + i], s = sin_t[t * half + i];
                /* each product < 2^61, each sum < 2^62 */
                v[2 * i] = rshift_round(a * c - b * s, UNIT_FRAC);
                v[2 * i + 1] = rshift_round(a * s + b * c, UNIT_FRAC);
            }
        }
}

/* ------------------------------------------------------------------------ */
/* attention                                                                 */

/* One query head h over all positions; p and score are [T] scratch.
 * Returns 1 (and stops) if a scaled score leaves |s16| < 2^31. */
static int attention_head(const int64_t *q, const int64_t *k, const int64_t *v, int64_t T,
                          int64_t H, int64_t Hkv, int64_t hd, int64_t h, int64_t inv_sqrt_hd_q30,
                          const int64_t *table, int64_t log2e_q30, int64_t *out,
                          int64_t *probs_slot, int64_t *score, int64_t *p, int64_t *acc) {
    int64_t kv = h / (H / Hkv);
    for (int64_t i = 0; i < T; i++) {
        const int64_t *qi = q + (i * H + h) * hd;
        int64_t mx = INT64_MIN;
        for (int64_t j = 0; j <= i; j++) {
            const int64_t *kj = k + (j * Hkv + kv) * hd;
            int64_t raw = 0; /* |q|, |k| < 2^24 (checked): < 2^48 * hd <= 2^62 for hd <= 2^14 */
            for (int64_t d = 0; d < hd; d++) raw += qi[d] * kj[d];
            int64_t s16 = rshift_round(raw, ACT_FRAC);
            if (s16 >= ((int64_t)1 << 31) || s16 <= -((int64_t)1 << 31)) return 1;
            /* |s16| < 2^31 (just checked), C = 2^30 / sqrt(hd) <= 2^30: |s16 * C| < 2^61 */
            int64_t sc = rshift_round(s16 * inv_sqrt_hd_q30, UNIT_FRAC);
            score[j] = sc;
            if (sc > mx) mx = sc;
        }
        int64_t total = 0; /* in [2^30, T * 2^30]: the maximum contributes 2^30 */
        for (int64_t j = 0; j <= i; j++) {
            p[j] = poai_exp_q30(score[j] - mx, table, log2e_q30);
            total += p[j];
        }
        int sh;
        int64_t rt = poai_recip_q30(poai_recip_normalize(total, &sh)); /* 1/total ~ rt 2^-(60+sh) */
        /* p = rshift_round(e * rt, 44 + sh): e <= 2^30, rt <= 2^30, sh <= 15 */
        for (int64_t j = 0; j <= i; j++) p[j] = rshift_round(p[j] * rt, 44 + sh);
        for (int64_t d = 0; d < hd; d++) acc[d] = 0;
        for (int64_t j = 0; j <= i; j++) {
            /* acc[d] = sum_j p_j v_jd: p <= 2^16, |v| < 2^31: < T * 2^47 */
            const int64_t *vj = v + (j * Hkv + kv) * hd;
            for (int64_t d = 0; d < hd; d++) acc[d] += p[j] * vj[d];
        }
        int64_t *oi = out + (i * H + h) * hd;
        for (int64_t d = 0; d < hd; d++) oi[d] = rshift_round(acc[d], ACT_FRAC);
        if (probs_slot)
            for (int64_t j = 0; j <= i; j++) probs_slot[i * T + j] = p[j];
    }
    return 0;
}

int poai_attention_batch(const int64_t *q, const int64_t *k, const int64_t *v, int64_t B,
                         int64_t T, int64_t H, int64_t Hkv, int64_t hd, int64_t inv_sqrt_hd_q30,
                         const int64_t *table, int64_t log2e_q30, int64_t *out,
                         const int64_t *sel, int64_t n_sel, int64_t *probs, int64_t *scratch,
                         int nthreads) {
    int status = 0;
    if (probs) memset(probs, 0, (size_t)(B * n_sel * T * T) * sizeof(int64_t));
    /* (sequence, head) pairs are independent: each is computed by one thread. */
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads) if (nthreads > 1) reduction(|:status)
    for (int64_t task = 0; task < B * H; task++) {
        int64_t b = task / H, h = task % H;
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        int64_t *mine = scratch + (int64_t)tid * (2 * T + hd);
        int64_t *slot = NULL;
        for (int64_t s = 0; s < n_sel; s++)
            if (sel[s] == h) slot = probs + (b * n_sel + s) * T * T;
        status |= attention_head(q + b * T * H * hd, k + b * T * Hkv * hd, v + b * T * Hkv * hd, T,
                                 H, Hkv, hd, h, inv_sqrt_hd_q30, table, log2e_q30,
                                 out + b * T * H * hd, slot, mine, mine + T, mine + 2 * T);
    }
    return status;
}
