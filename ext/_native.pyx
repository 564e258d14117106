# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""poai._native: thin Cython bindings of the scalar C kernels (ext/poai_kernels.c).

Arrays are validated (dtype, contiguity, shape) here; value ranges are
checked by poai/engine/ops_native.py before calling, exactly as the
reference checks them.
"""

import numpy as np
cimport numpy as cnp
from libc.stdint cimport int8_t, int16_t, int32_t, int64_t

cnp.import_array()

cdef extern from "poai_kernels.h":
    int poai_arith_shift_ok()
    void poai_quantize_act(const int64_t *x, int64_t T, int64_t K,
                           int16_t *q, int64_t *m, int64_t *sh) nogil
    void poai_matmul(const int64_t *x, int64_t T, int64_t K,
                     const int8_t *wq, const int32_t *scale, const int32_t *minv,
                     int64_t rows, int64_t bs, int64_t *y,
                     int16_t *q, int64_t *m, int64_t *sh) nogil
    void poai_rmsnorm(const int64_t *x, int64_t T, int64_t n, const int64_t *g,
                      int64_t eps_q32, int64_t *y) nogil
    void poai_layernorm(const int64_t *x, int64_t T, int64_t n, const int64_t *g,
                        const int64_t *b, int64_t eps_q32, int64_t *y) nogil
    int64_t poai_exp_q30(int64_t z, const int64_t *table, int64_t log2e_q30) nogil
    void poai_silu_mul(const int64_t *gate, const int64_t *up, int64_t n,
                       const int64_t *table, int64_t log2e_q30, int64_t *out) nogil
    void poai_gelu(const int64_t *x, int64_t n, const int64_t *table, int64_t log2e_q30,
                   int64_t cubic_q30, int64_t scale_q30, int64_t *out) nogil
    void poai_rope(int64_t *x, int64_t T, int64_t H, int64_t hd, int64_t n_rot,
                   const int64_t *cos_t, const int64_t *sin_t) nogil
    int poai_attention(const int64_t *q, const int64_t *k, const int64_t *v,
                       int64_t T, int64_t H, int64_t Hkv, int64_t hd,
                       int64_t inv_sqrt_hd_q30, const int64_t *table, int64_t log2e_q30,
                       int64_t *out, const int64_t *sel, int64_t n_sel, int64_t *probs,
                       int64_t *scratch) nogil

if not poai_arith_shift_ok():
    raise ImportError("poai._native: this compiler's >> on negative int64 is not arithmetic")


def _c64(a):
    return np.ascontiguousarray(a, dtype=np.int64)


def quantize_act(x):
    cdef cnp.ndarray[int64_t, ndim=2] xa = _c64(x)
    cdef int64_t T = xa.shape[0], K = xa.shape[1]
    if K % 32:
        raise ValueError("K must be a multiple of 32")
    cdef cnp.ndarray[int16_t, ndim=2] q = np.empty((T, K), dtype=np.int16)
    cdef cnp.ndarray[int64_t, ndim=2] m = np.empty((T, K // 32), dtype=np.int64)
    cdef cnp.ndarray[int64_t, ndim=2] sh = np.empty((T, K // 32), dtype=np.int64)
    with nogil:
        poai_quantize_act(&xa[0, 0], T, K, &q[0, 0], &m[0, 0], &sh[0, 0])
    return q, m, sh


def matmul(x, wq, scale, minv, int64_t bs):
    cdef cnp.ndarray[int64_t, ndim=2] xa = _c64(x)
    cdef cnp.ndarray[int8_t, ndim=2] w = np.ascontiguousarray(wq, dtype=np.int8)
    cdef cnp.ndarray[int32_t, ndim=2] s = np.ascontiguousarray(scale, dtype=np.int32)
    cdef cnp.ndarray[int32_t, ndim=2] mn
    cdef const int32_t *mp = NULL
    cdef int64_t T = xa.shape[0], K = xa.shape[1], rows = w.shape[0]
    if w.shape[1] != K or K % 32 or bs not in (16, 32) or s.shape[0] != rows or s.shape[1] != K // bs:
        raise ValueError("matmul: inconsistent shapes")
    if minv is not None:
        mn = np.ascontiguousarray(minv, dtype=np.int32)
        if mn.shape[0] != rows or mn.shape[1] != K // bs:
            raise ValueError("matmul: inconsistent offset shape")
        mp = &mn[0, 0]
    cdef cnp.ndarray[int64_t, ndim=2] y = np.empty((T, rows), dtype=np.int64)
    cdef cnp.ndarray[int16_t, ndim=2] q = np.empty((T, K), dtype=np.int16)
    cdef cnp.ndarray[int64_t, ndim=2] m = np.empty((T, K // 32), dtype=np.int64)
    cdef cnp.ndarray[int64_t, ndim=2] sh = np.empty((T, K // 32), dtype=np.int64)
    if T == 0 or rows == 0:
        return y
    with nogil:
        poai_matmul(&xa[0, 0], T, K, &w[0, 0], &s[0, 0], mp, rows, bs, &y[0, 0],
                    &q[0, 0], &m[0, 0], &sh[0, 0])
    return y


def rmsnorm(x, g, int64_t eps_q32):
    cdef cnp.ndarray[int64_t, ndim=2] xa = _c64(x)
    cdef cnp.ndarray[int64_t, ndim=1] ga = _c64(g)
    cdef int64_t T = xa.shape[0], n = xa.shape[1]
    if ga.shape[0] != n:
        raise ValueError("rmsnorm: gain length")
    cdef cnp.ndarray[int64_t, ndim=2] y = np.empty((T, n), dtype=np.int64)
    with nogil:
        poai_rmsnorm(&xa[0, 0], T, n, &ga[0], eps_q32, &y[0, 0])
    return y


def layernorm(x, g, b, int64_t eps_q32):
    cdef cnp.ndarray[int64_t, ndim=2] xa = _c64(x)
    cdef cnp.ndarray[int64_t, ndim=1] ga = _c64(g)
    cdef cnp.ndarray[int64_t, ndim=1] ba = _c64(b)
    cdef int64_t T = xa.shape[0], n = xa.shape[1]
    if ga.shape[0] != n or ba.shape[0] != n:
        raise ValueError("layernorm: gain/bias length")
    cdef cnp.ndarray[int64_t, ndim=2] y = np.empty((T, n), dtype=np.int64)
    with nogil:
        poai_layernorm(&xa[0, 0], T, n, &ga[0], &ba[0], eps_q32, &y[0, 0])
    return y


def exp_q30(z, table, int64_t log2e_q30):
    cdef cnp.ndarray[int64_t, ndim=1] za = _c64(z).reshape(-1)
    cdef cnp.ndarray[int64_t, ndim=1] ta = _c64(table)
    cdef cnp.ndarray[int64_t, ndim=1] out = np.empty_like(za)
    cdef Py_ssize_t i
    for i in range(za.shape[0]):
        out[i] = poai_exp_q30(za[i], &ta[0], log2e_q30)
    return out.reshape(np.shape(z))


def silu_mul(gate, up, table, int64_t log2e_q30):
    cdef cnp.ndarray[int64_t, ndim=1] ga = _c64(gate).reshape(-1)
    cdef cnp.ndarray[int64_t, ndim=1] ua = _c64(up).reshape(-1)
    cdef cnp.ndarray[int64_t, ndim=1] ta = _c64(table)
    if ga.shape[0] != ua.shape[0]:
        raise ValueError("silu_mul: shapes differ")
    cdef cnp.ndarray[int64_t, ndim=1] out = np.empty_like(ga)
    if ga.shape[0]:
        with nogil:
            poai_silu_mul(&ga[0], &ua[0], ga.shape[0], &ta[0], log2e_q30, &out[0])
    return out.reshape(np.shape(gate))


def gelu(x, table, int64_t log2e_q30, int64_t cubic_q30, int64_t scale_q30):
    cdef cnp.ndarray[int64_t, ndim=1] xa = _c64(x).reshape(-1)
    cdef cnp.ndarray[int64_t, ndim=1] ta = _c64(table)
    cdef cnp.ndarray[int64_t, ndim=1] out = np.empty_like(xa)
    if xa.shape[0]:
        with nogil:
            poai_gelu(&xa[0], xa.shape[0], &ta[0], log2e_q30, cubic_q30, scale_q30, &out[0])
    return out.reshape(np.shape(x))


def rope(x, cos, sin, int64_t n_rot):
    cdef cnp.ndarray[int64_t, ndim=3] xa = np.array(x, dtype=np.int64, order="C", copy=True)
    cdef cnp.ndarray[int64_t, ndim=2] ca = _c64(cos)
    cdef cnp.ndarray[int64_t, ndim=2] sa = _c64(sin)
    cdef int64_t T = xa.shape[0], H = xa.shape[1], hd = xa.shape[2]
    if ca.shape[0] < T or ca.shape[1] != n_rot // 2 or sa.shape[0] < T or sa.shape[1] != n_rot // 2:
        raise ValueError("rope: table shape")
    if T and n_rot:
        with nogil:
            poai_rope(&xa[0, 0, 0], T, H, hd, n_rot, &ca[0, 0], &sa[0, 0])
    return xa


def attention(q, k, v, sel, int64_t inv_sqrt_hd_q30, table, int64_t log2e_q30):
    """Returns (out, probs or None, status); status 1 = score out of range."""
    cdef cnp.ndarray[int64_t, ndim=3] qa = _c64(q)
    cdef cnp.ndarray[int64_t, ndim=3] ka = _c64(k)
    cdef cnp.ndarray[int64_t, ndim=3] va = _c64(v)
    cdef cnp.ndarray[int64_t, ndim=1] ta = _c64(table)
    cdef int64_t T = qa.shape[0], H = qa.shape[1], hd = qa.shape[2], Hkv = ka.shape[1]
    if ka.shape[0] != T or va.shape[0] != T or va.shape[1] != Hkv or ka.shape[2] != hd \
            or va.shape[2] != hd or Hkv == 0 or H % Hkv:
        raise ValueError("attention: inconsistent shapes")
    cdef cnp.ndarray[int64_t, ndim=1] sa = _c64(sel if sel is not None else [])
    cdef int64_t n_sel = sa.shape[0]
    cdef cnp.ndarray[int64_t, ndim=3] out = np.empty((T, H, hd), dtype=np.int64)
    cdef cnp.ndarray[int64_t, ndim=3] pr = np.zeros((max(n_sel, 1), T, T), dtype=np.int64)
    cdef cnp.ndarray[int64_t, ndim=1] scratch = np.empty(2 * T + 1, dtype=np.int64)
    cdef cnp.ndarray[int64_t, ndim=1] sel_pad = np.zeros(max(n_sel, 1), dtype=np.int64)
    cdef int status = 0
    cdef int64_t *prp = NULL
    if n_sel:
        sel_pad[:n_sel] = sa
        prp = &pr[0, 0, 0]
    if T == 0:
        return out, (pr[:n_sel] if sel is not None else None), 0
    with nogil:
        status = poai_attention(&qa[0, 0, 0], &ka[0, 0, 0], &va[0, 0, 0], T, H, Hkv, hd,
                                inv_sqrt_hd_q30, &ta[0], log2e_q30, &out[0, 0, 0],
                                &sel_pad[0], n_sel, prp, &scratch[0])
    return out, (pr[:n_sel] if sel is not None else None), status

