# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""poai._native: thin Cython bindings of the C kernels in ext/.

poai_kernels.c holds the scalar kernels (the C reference); poai_packed.c,
poai_avx2.c, poai_avx512.c, poai_amx.c (AMX-INT8) and poai_neon.c (AArch64)
the packed matrix product and its SIMD variants, chosen by the caller (poai/engine/kernels.py)
from CPU detection; poai_probe.c the benchmark's register-only dot-product peak probes.

Arrays are validated (dtype, contiguity, shape) here; value ranges are
checked by poai/engine/ops_native.py before calling, exactly as the
reference checks them.
"""

import numpy as np
cimport numpy as cnp
from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint8_t

cnp.import_array()

cdef extern from "poai_kernels.h":
    int poai_arith_shift_ok()
    void poai_kernels_init()
    const int64_t *poai_recip_table()
    int64_t poai_recip_q30(int64_t d) nogil
    void poai_quantize_act(const int64_t *x, int64_t T, int64_t K,
                           int16_t *q, int64_t *e) nogil
    void poai_rmsnorm(const int64_t *x, int64_t T, int64_t n, const int64_t *g,
                      int64_t eps_q32, int64_t *y) nogil
    void poai_layernorm(const int64_t *x, int64_t T, int64_t n, const int64_t *g,
                        const int64_t *b, int64_t eps_q32, int64_t *y) nogil
    int64_t poai_exp_q30(int64_t z, const int64_t *table, int64_t log2e_q30) nogil
    void poai_gelu(const int64_t *x, int64_t n, const int64_t *table, int64_t log2e_q30,
                   int64_t cubic_q30, int64_t scale_q30, int64_t *out) nogil
    void poai_rope(int64_t *x, int64_t T, int64_t H, int64_t hd, int64_t n_rot,
                   const int64_t *cos_t, const int64_t *sin_t) nogil
    int poai_attention_batch(const int64_t *q, const int64_t *k, const int64_t *v, int64_t B,
                             int64_t T, int64_t H, int64_t Hkv, int64_t hd,
                             int64_t inv_sqrt_hd_q30, const int64_t *table, int64_t log2e_q30,
                             int64_t *out, const int64_t *sel, int64_t n_sel, int64_t *probs,
                             int64_t *scratch, int nthreads) nogil
    void poai_silu_mul(const int64_t *gate, const int64_t *up, int64_t n,
                       const int64_t *table, int64_t log2e_q30, int64_t *out, int nthreads) nogil
    void poai_rmsnorm_avx2(const int64_t *x, int64_t T, int64_t n, const int64_t *g,
                           int64_t eps_q32, int64_t *y) nogil
    void poai_rope_avx2(int64_t *x, int64_t T, int64_t H, int64_t hd, int64_t n_rot,
                        const int64_t *cos_t, const int64_t *sin_t) nogil
    void poai_silu_mul_avx2(const int64_t *gate, const int64_t *up, int64_t n,
                            const int64_t *table, int64_t log2e_q30, int64_t *out,
                            int nthreads) nogil
    int poai_attention_batch_avx2(const int64_t *q, const int64_t *k, const int64_t *v,
                                  int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t hd,
                                  int64_t inv_sqrt_hd_q30, const int64_t *table,
                                  int64_t log2e_q30, int64_t *out, const int64_t *sel,
                                  int64_t n_sel, int64_t *probs, int nthreads) nogil

cdef extern from "poai_probe.h":
    int64_t poai_dot_probe(int kind, int64_t iters, int64_t *sink) nogil

cdef extern from "poai_packed.h":
    ctypedef struct poai_pmat:
        int64_t rows, K
        int wbits
        const uint8_t *wp
        const int32_t *psc0
        const int32_t *psc1
        const int32_t *pmn
        const int32_t *pmn1
    int64_t poai_packed_group(int64_t K)
    int64_t poai_packed_rowsets(int64_t rows, int64_t K)
    void poai_quantize_packed(int variant, const int64_t *x, int64_t T, int64_t K, int16_t *qa,
                              int64_t *s, int64_t *ysh, int64_t *asum, int nthreads) nogil
    void poai_matmul_pmat(int variant, const int16_t *qa, const int64_t *s, const int64_t *ysh,
                          const int64_t *asum, int64_t T, const poai_pmat *w, int64_t *y,
                          int nthreads) nogil
    int poai_cpu_has_avx2()
    int poai_cpu_has_avx512()
    int poai_cpu_has_neon()
    int poai_cpu_has_amx()
    int poai_amx_min_tokens

if not poai_arith_shift_ok():
    raise ImportError("poai._native: this compiler's >> on negative int64 is not arithmetic")
poai_kernels_init()


def recip_table():
    """The C kernels' reciprocal seed table (must equal tables.recip_table)."""
    cdef const int64_t *t = poai_recip_table()
    return np.array([t[i] for i in range(257)], dtype=np.int64)


def recip_q30(d):
    """recip_q30 of each d in [2^30, 2^31] (the caller checks the range)."""
    cdef cnp.ndarray[int64_t, ndim=1] da = _c64(d).reshape(-1)
    cdef cnp.ndarray[int64_t, ndim=1] out = np.empty_like(da)
    cdef Py_ssize_t i
    for i in range(da.shape[0]):
        if da[i] < (1 << 30) or da[i] > (1 << 31):
            raise ValueError("recip_q30: divisor outside [2^30, 2^31]")
        out[i] = poai_recip_q30(da[i])
    return out.reshape(np.shape(d))


def _c64(a):
    return np.ascontiguousarray(a, dtype=np.int64)


cdef bint _ops_avx2(str variant) except -1:
    if variant in ("avx2", "avx512", "amx"):   # amx and avx512 run the AVX2 ops
        if not poai_cpu_has_avx2():
            raise ValueError(f"variant {variant!r} is not usable on this CPU")
        return True
    if variant == "neon":   # the NEON kernel is the matrix product; the other ops are scalar C
        if not poai_cpu_has_neon():
            raise ValueError(f"variant {variant!r} is not usable on this CPU")
        return False
    if variant not in ("scalar", "generic"):
        raise ValueError(f"unknown variant {variant!r}")
    return False


def quantize_act(x):
    cdef cnp.ndarray[int64_t, ndim=2] xa = _c64(x)
    cdef int64_t T = xa.shape[0], K = xa.shape[1]
    if K % 32:
        raise ValueError("K must be a multiple of 32")
    cdef cnp.ndarray[int16_t, ndim=2] q = np.empty((T, K), dtype=np.int16)
    cdef cnp.ndarray[int64_t, ndim=2] e = np.empty((T, K // 32), dtype=np.int64)
    if T and K:
        with nogil:
            poai_quantize_act(&xa[0, 0], T, K, &q[0, 0], &e[0, 0])
    return q, e


def rmsnorm(x, g, int64_t eps_q32, str variant="scalar"):
    cdef bint vec = _ops_avx2(variant)
    cdef cnp.ndarray[int64_t, ndim=2] xa = _c64(x)
    cdef cnp.ndarray[int64_t, ndim=1] ga = _c64(g)
    cdef int64_t T = xa.shape[0], n = xa.shape[1]
    if ga.shape[0] != n:
        raise ValueError("rmsnorm: gain length")
    cdef cnp.ndarray[int64_t, ndim=2] y = np.empty((T, n), dtype=np.int64)
    if T == 0 or n == 0:
        return y
    with nogil:
        if vec:
            poai_rmsnorm_avx2(&xa[0, 0], T, n, &ga[0], eps_q32, &y[0, 0])
        else:
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


def silu_mul(gate, up, table, int64_t log2e_q30, int nthreads=1, str variant="scalar"):
    """silu(gate) * up; variant "avx2" (or "avx512", which runs the AVX2
    code) uses ext/poai_ops_avx2.c where the CPU has AVX2."""
    cdef bint vec = _ops_avx2(variant)
    cdef cnp.ndarray[int64_t, ndim=1] ga = _c64(gate).reshape(-1)
    cdef cnp.ndarray[int64_t, ndim=1] ua = _c64(up).reshape(-1)
    cdef cnp.ndarray[int64_t, ndim=1] ta = _c64(table)
    if ga.shape[0] != ua.shape[0]:
        raise ValueError("silu_mul: shapes differ")
    cdef cnp.ndarray[int64_t, ndim=1] out = np.empty_like(ga)
    if ga.shape[0]:
        with nogil:
            if vec:
                poai_silu_mul_avx2(&ga[0], &ua[0], ga.shape[0], &ta[0], log2e_q30, &out[0],
                                   max(nthreads, 1))
            else:
                poai_silu_mul(&ga[0], &ua[0], ga.shape[0], &ta[0], log2e_q30, &out[0],
                              max(nthreads, 1))
    return out.reshape(np.shape(gate))


def gelu(x, table, int64_t log2e_q30, int64_t cubic_q30, int64_t scale_q30):
    cdef cnp.ndarray[int64_t, ndim=1] xa = _c64(x).reshape(-1)
    cdef cnp.ndarray[int64_t, ndim=1] ta = _c64(table)
    cdef cnp.ndarray[int64_t, ndim=1] out = np.empty_like(xa)
    if xa.shape[0]:
        with nogil:
            poai_gelu(&xa[0], xa.shape[0], &ta[0], log2e_q30, cubic_q30, scale_q30, &out[0])
    return out.reshape(np.shape(x))


def rope(x, cos, sin, int64_t n_rot, str variant="scalar"):
    cdef bint vec = _ops_avx2(variant)
    cdef cnp.ndarray[int64_t, ndim=3] xa = np.array(x, dtype=np.int64, order="C", copy=True)
    cdef cnp.ndarray[int64_t, ndim=2] ca = _c64(cos)
    cdef cnp.ndarray[int64_t, ndim=2] sa = _c64(sin)
    cdef int64_t T = xa.shape[0], H = xa.shape[1], hd = xa.shape[2]
    if ca.shape[0] < T or ca.shape[1] != n_rot // 2 or sa.shape[0] < T or sa.shape[1] != n_rot // 2:
        raise ValueError("rope: table shape")
    if T and n_rot:
        with nogil:
            if vec:
                poai_rope_avx2(&xa[0, 0, 0], T, H, hd, n_rot, &ca[0, 0], &sa[0, 0])
            else:
                poai_rope(&xa[0, 0, 0], T, H, hd, n_rot, &ca[0, 0], &sa[0, 0])
    return xa


def attention(q, k, v, sel, int64_t inv_sqrt_hd_q30, table, int64_t log2e_q30, int nthreads=1):
    """One sequence: returns (out, probs [n_sel, T, T] or None, status);
    status 1 = a score left its range."""
    out, probs, status = attention_batch(q, k, v, 1, sel, inv_sqrt_hd_q30, table, log2e_q30, nthreads)
    return out, (None if probs is None else probs[0]), status


def attention_batch(q, k, v, int64_t B, sel, int64_t inv_sqrt_hd_q30, table, int64_t log2e_q30,
                    int nthreads=1, str variant="scalar"):
    """B sequences stacked in q [B*T, H, hd], k, v [B*T, Hkv, hd].
    Returns (out [B*T, H, hd], probs [B, n_sel, T, T] or None, status)."""
    cdef cnp.ndarray[int64_t, ndim=3] qa = _c64(q)
    cdef cnp.ndarray[int64_t, ndim=3] ka = _c64(k)
    cdef cnp.ndarray[int64_t, ndim=3] va = _c64(v)
    cdef cnp.ndarray[int64_t, ndim=1] ta = _c64(table)
    cdef int64_t N = qa.shape[0], H = qa.shape[1], hd = qa.shape[2], Hkv = ka.shape[1]
    if B < 1 or N % B or ka.shape[0] != N or va.shape[0] != N or va.shape[1] != Hkv \
            or ka.shape[2] != hd or va.shape[2] != hd or Hkv == 0 or H % Hkv or N == 0:
        raise ValueError("attention_batch: inconsistent shapes")
    cdef int64_t T = N // B
    if nthreads < 1:
        nthreads = 1
    cdef cnp.ndarray[int64_t, ndim=1] sa = _c64(sel if sel is not None else [])
    cdef int64_t n_sel = sa.shape[0]
    cdef cnp.ndarray[int64_t, ndim=3] out = np.empty((N, H, hd), dtype=np.int64)
    cdef cnp.ndarray[int64_t, ndim=4] pr = np.zeros((B, max(n_sel, 1), T, T), dtype=np.int64)
    cdef cnp.ndarray[int64_t, ndim=1] scratch = np.empty(nthreads * (2 * T + hd) + 1, dtype=np.int64)
    cdef cnp.ndarray[int64_t, ndim=1] sel_pad = np.zeros(max(n_sel, 1), dtype=np.int64)
    cdef int status = 0
    cdef int64_t *prp = NULL
    cdef bint vec = _ops_avx2(variant)
    if n_sel:
        sel_pad[:n_sel] = sa
        prp = &pr[0, 0, 0, 0]
    with nogil:
        if vec:
            status = poai_attention_batch_avx2(&qa[0, 0, 0], &ka[0, 0, 0], &va[0, 0, 0], B, T, H,
                                               Hkv, hd, inv_sqrt_hd_q30, &ta[0], log2e_q30,
                                               &out[0, 0, 0], &sel_pad[0], n_sel, prp, nthreads)
        else:
            status = poai_attention_batch(&qa[0, 0, 0], &ka[0, 0, 0], &va[0, 0, 0], B, T, H, Hkv,
                                          hd, inv_sqrt_hd_q30, &ta[0], log2e_q30, &out[0, 0, 0],
                                          &sel_pad[0], n_sel, prp, &scratch[0], nthreads)
    if status & 2:
        raise MemoryError("attention: no memory for the scratch buffers")
    return out, (pr[:, :n_sel] if sel is not None else None), status


def cpu_supports(str variant):
    """Whether this CPU (and OS) can run a packed variant."""
    if variant == "generic":
        return True
    if variant == "avx2":
        return bool(poai_cpu_has_avx2())
    if variant == "avx512":
        return bool(poai_cpu_has_avx512())
    if variant == "neon":
        return bool(poai_cpu_has_neon())
    if variant == "amx":
        return bool(poai_cpu_has_amx())
    raise ValueError(f"unknown packed variant {variant!r}")


def amx_min_tokens(n=None):
    """The amx variant's token count below which it runs the AVX-512 kernel
    (same bits); with n, set it (tests set 1 to check the tile path on every
    T) and return the previous value."""
    global poai_amx_min_tokens
    old = poai_amx_min_tokens
    if n is not None:
        if n < 1:
            raise ValueError("amx_min_tokens: n must be positive")
        poai_amx_min_tokens = n
    return old


cdef const int32_t *_i32_ptr(a):
    """Data pointer of a C-contiguous int32 ndarray, or NULL for None."""
    if a is None:
        return NULL
    return <const int32_t *>cnp.PyArray_DATA(a)


def packed_geometry(int64_t rows, int64_t K):
    """(g blocks per group, row sets, groups) of the packed layout (poai_packed.h)."""
    if K % 32 or K <= 0 or rows <= 0:
        raise ValueError("packed layout: K must be a positive multiple of 32, rows positive")
    cdef int64_t g = poai_packed_group(K)
    return g, poai_packed_rowsets(rows, K), K // 32 // g


def quantize_packed(x, int nthreads=1, str variant="generic"):
    """(qa int16 [T, K] packed, s int64 [T, 16 * K/32 / g] (left shifts),
    ysh int64 [T] (final right shifts), asum int64 [T, 16 * K/32 / g]);
    the same bits under every variant."""
    cdef int vid = _variant_id(variant)
    cdef cnp.ndarray[int64_t, ndim=2] xa = _c64(x)
    cdef int64_t T = xa.shape[0], K = xa.shape[1]
    if K % 32 or K == 0 or nthreads < 1:
        raise ValueError("K must be a positive multiple of 32")
    cdef int64_t nl = (K // 32 // poai_packed_group(K)) * 16
    cdef cnp.ndarray[int16_t, ndim=2] qa = np.empty((T, K), dtype=np.int16)
    cdef cnp.ndarray[int64_t, ndim=2] s = np.empty((T, nl), dtype=np.int64)
    cdef cnp.ndarray[int64_t, ndim=1] ysh = np.empty(T, dtype=np.int64)
    cdef cnp.ndarray[int64_t, ndim=2] asum = np.empty((T, nl), dtype=np.int64)
    if T:
        with nogil:
            poai_quantize_packed(vid, &xa[0, 0], T, K, &qa[0, 0], &s[0, 0], &ysh[0], &asum[0, 0],
                                 nthreads)
    return qa, s, ysh, asum


VARIANTS = {"generic": 0, "avx2": 1, "avx512": 2, "neon": 3, "amx": 4}   # POAI_VARIANT_*


cdef int _variant_id(str variant) except -1:
    if variant == "generic":
        return 0
    if variant == "avx2" and poai_cpu_has_avx2():
        return 1
    if variant == "avx512" and poai_cpu_has_avx512():
        return 2
    if variant == "neon" and poai_cpu_has_neon():
        return 3
    if variant == "amx" and poai_cpu_has_amx():
        return 4
    raise ValueError(f"packed variant {variant!r} is not usable on this CPU")


def _check_packed(pm, int64_t K):
    """Validate a PackedMatrix's arrays against the layout for width K."""
    cdef int64_t rows = pm.rows
    if K % 32 or K == 0 or rows < 1 or pm.K != K or pm.wbits not in (4, 8):
        raise ValueError("matmul_packed: the packed weight does not match x's width")
    cdef int64_t g = poai_packed_group(K), nrs = poai_packed_rowsets(rows, K)
    cdef int64_t nl = (K // 32 // g) * 16
    for arr, dt, width in ((pm.wp, np.uint8, nl * 4 * pm.wbits), (pm.psc0, np.int32, nl),
                           (pm.psc1, np.int32, nl), (pm.pmn, np.int32, nl),
                           (pm.pmn1, np.int32, nl)):
        if arr is None:
            continue
        if not isinstance(arr, np.ndarray) or arr.dtype != dt or not arr.flags.c_contiguous \
                or arr.ndim != 2 or arr.shape[0] != nrs or arr.shape[1] != width:
            raise ValueError("matmul_packed: the packed weight does not match x's width")
    if pm.psc0 is None or pm.wp is None:
        raise ValueError("matmul_packed: needs wp and psc0")
    if pm.pmn is not None and (pm.psc1 is not None) != (pm.pmn1 is not None):
        raise ValueError("matmul_packed: 16-wide blocks with offsets need pmn and pmn1, "
                         "32-wide blocks pmn only")
    if pm.pmn1 is not None and pm.pmn is None:
        raise ValueError("matmul_packed: pmn1 needs pmn")


cdef poai_pmat _pmat(int64_t K, packed) except *:
    _check_packed(packed, K)
    cdef poai_pmat m
    m.rows = packed.rows
    m.K = K
    m.wbits = packed.wbits
    m.wp = <const uint8_t *>cnp.PyArray_DATA(packed.wp)
    m.psc0 = _i32_ptr(packed.psc0)
    m.psc1 = _i32_ptr(packed.psc1)
    m.pmn = _i32_ptr(packed.pmn)
    m.pmn1 = _i32_ptr(packed.pmn1)
    return m


def matmul_quantized(str variant, quantized, pm, int nthreads=1):
    """y[T, pm.rows] (Q16) from quantize_packed(x)'s output and a PackedMatrix
    pm (rows, K, wbits, wp, psc0, psc1, pmn, pmn1): one quantization can serve
    every weight that reads the same x."""
    cdef int vid = _variant_id(variant)
    qa_o, s_o, ysh_o, asum_o = quantized
    cdef cnp.ndarray[int16_t, ndim=2] qa = qa_o
    cdef cnp.ndarray[int64_t, ndim=2] s = s_o
    cdef cnp.ndarray[int64_t, ndim=1] ysh = ysh_o
    cdef cnp.ndarray[int64_t, ndim=2] asum = asum_o
    cdef int64_t T = qa.shape[0], K = qa.shape[1]
    if nthreads < 1:
        raise ValueError("matmul_quantized: nthreads must be positive")
    cdef int64_t nl = (K // 32 // poai_packed_group(K)) * 16
    for arr in (qa, s, ysh, asum):
        if not arr.flags.c_contiguous or arr.shape[0] != T:
            raise ValueError("matmul_quantized: not the output of quantize_packed")
    if s.shape[1] != nl or asum.shape[1] != nl:
        raise ValueError("matmul_quantized: not the output of quantize_packed")
    cdef poai_pmat w = _pmat(K, pm)
    cdef cnp.ndarray[int64_t, ndim=2] y = np.empty((T, w.rows), dtype=np.int64)
    if T == 0:
        return y
    with nogil:
        poai_matmul_pmat(vid, &qa[0, 0], &s[0, 0], &ysh[0], &asum[0, 0], T, &w, &y[0, 0],
                         nthreads)
    return y


def matmul_packed(str variant, x, pm, int nthreads=1):
    """y[T, pm.rows] (Q16) = x[T, K] times a PackedMatrix."""
    return matmul_quantized(variant, quantize_packed(x, nthreads, variant), pm, nthreads)


# Register-only dot-product probes (ext/poai_probe.h): name -> probe kind.
DOT_PROBES = {"avx2-int16": 0, "avx2-int8": 1, "vnni-int16": 2, "vnni-int8": 3,
              "amx-int16": 4, "amx-int8": 5}


def dot_probe(str kind, int64_t iters):
    """Run one register-only dot-product probe for iters loop iterations
    (timing only, for the benchmark's peak rates) and return the MACs done.
    Raises ValueError for an unknown kind or one this CPU cannot run."""
    if kind not in DOT_PROBES:
        raise ValueError(f"unknown dot probe {kind!r} (known: {', '.join(DOT_PROBES)})")
    cdef int k = DOT_PROBES[kind]
    cdef int64_t sink = 0, macs
    with nogil:
        macs = poai_dot_probe(k, iters, &sink)
    if macs <= 0 and iters > 0:
        raise ValueError(f"dot probe {kind} is not usable on this CPU")
    return macs


# --- the fused forward (ext/poai_forward.c) -----------------------------------

from libc.stdlib cimport calloc, free

cdef extern from "poai_forward.h":
    int POAI_FW_FFN_CHUNK
    ctypedef struct poai_fw_layer:
        const int64_t *attn_norm
        const int64_t *ffn_norm
        poai_pmat wq, wk, wv, wo, wg, wu, wd
    ctypedef struct poai_fw_model:
        int64_t n_layer, d, ff, H, Hkv, hd, n_rot
        int64_t eps_q32, inv_sqrt_hd_q30, log2e_q30
        const int64_t *exp_table
        const poai_fw_layer *layers
        const int64_t *out_norm
    ctypedef struct poai_fw_buffers:
        int64_t *h
        int64_t *q
        int64_t *k
        int64_t *v
        int64_t *a
        int64_t *o
        int64_t *g
        int64_t *u
        int16_t *qa
        int64_t *qs
        int64_t *qy
        int64_t *qsum
        int64_t *att
    int poai_forward_llama(const poai_fw_model *m, int variant, int64_t *x, int64_t B, int64_t T,
                           const int64_t *cos_t, const int64_t *sin_t, const int64_t *sel_layer,
                           const int64_t *sel_head, int64_t n_sel, int64_t *probs,
                           const poai_fw_buffers *buf, int nthreads) nogil

VARIANTS = {"generic": 0, "avx2": 1, "avx512": 2, "neon": 3, "amx": 4}   # POAI_VARIANT_*


cdef const int64_t *_i64_ptr(a) except NULL:
    if not isinstance(a, np.ndarray) or a.dtype != np.int64 or not a.flags.c_contiguous:
        raise ValueError("expected a C-contiguous int64 array")
    return <const int64_t *>cnp.PyArray_DATA(a)


def _lanes(int64_t K):
    return (K // 32 // poai_packed_group(K)) * 16


cdef class FusedLlama:
    """A llama-family model wired for poai_forward_llama: pointers into the
    caller's arrays (kept alive here) and work buffers per batch shape."""

    cdef poai_fw_model model
    cdef poai_fw_layer *layers
    cdef object keep
    cdef dict buffers

    def __cinit__(self):
        self.layers = NULL

    def __init__(self, cfg, layers, out_norm, exp_table, int64_t inv_sqrt_hd_q30,
                 int64_t log2e_q30):
        """cfg: (n_layer, d, ff, H, Hkv, hd, n_rot, eps_q32); layers: a list of
        (attn_norm, ffn_norm, [(K, packed) for wq, wk, wv, wo, wg, wu, wd])."""
        n_layer, d, ff, H, Hkv, hd, n_rot, eps = cfg
        if len(layers) != n_layer or n_layer < 1:
            raise ValueError("FusedLlama: layer count")
        self.keep = [layers, out_norm, exp_table]
        self.buffers = {}
        self.layers = <poai_fw_layer *>calloc(n_layer, sizeof(poai_fw_layer))
        if self.layers == NULL:
            raise MemoryError()
        cdef int64_t i
        for i in range(n_layer):
            an, fn, mats = layers[i]
            if an.shape[0] != d or fn.shape[0] != d or len(mats) != 7:
                raise ValueError("FusedLlama: layer shapes")
            self.layers[i].attn_norm = _i64_ptr(an)
            self.layers[i].ffn_norm = _i64_ptr(fn)
            self.layers[i].wq = _pmat(mats[0][0], mats[0][1])
            self.layers[i].wk = _pmat(mats[1][0], mats[1][1])
            self.layers[i].wv = _pmat(mats[2][0], mats[2][1])
            self.layers[i].wo = _pmat(mats[3][0], mats[3][1])
            self.layers[i].wg = _pmat(mats[4][0], mats[4][1])
            self.layers[i].wu = _pmat(mats[5][0], mats[5][1])
            self.layers[i].wd = _pmat(mats[6][0], mats[6][1])
        self.model.n_layer = n_layer
        self.model.d = d
        self.model.ff = ff
        self.model.H = H
        self.model.Hkv = Hkv
        self.model.hd = hd
        self.model.n_rot = n_rot
        self.model.eps_q32 = eps
        self.model.inv_sqrt_hd_q30 = inv_sqrt_hd_q30
        self.model.log2e_q30 = log2e_q30
        if exp_table.shape[0] != 1025:
            raise ValueError("FusedLlama: exp2 table")
        self.model.exp_table = _i64_ptr(exp_table)
        self.model.layers = self.layers
        if out_norm.shape[0] != d:
            raise ValueError("FusedLlama: output norm")
        self.model.out_norm = _i64_ptr(out_norm)

    def __dealloc__(self):
        free(self.layers)

    cdef dict _buffers(self, int64_t B, int64_t T, int nthreads):
        key = (B, T, nthreads)
        bufs = self.buffers.get(key)
        if bufs is None:
            m = self.model
            N = B * T
            C = min(N, POAI_FW_FFN_CHUNK)
            nq = max(N * m.d, C * m.ff)
            lanes = max(N * _lanes(m.d), C * _lanes(m.ff))
            z = np.empty
            # a shares h's memory and o q's (poai_forward.h: never live at once)
            bufs = dict(h=z(N * m.d, np.int64), q=z(N * max(m.H * m.hd, m.d), np.int64),
                        k=z(N * m.Hkv * m.hd, np.int64), v=z(N * m.Hkv * m.hd, np.int64),
                        g=z(C * m.ff, np.int64), u=z(C * m.ff, np.int64),
                        qa=z(nq, np.int16), qs=z(lanes, np.int64),
                        qy=z(N, np.int64), qsum=z(lanes, np.int64),
                        att=z(nthreads * (2 * T + m.hd), np.int64))
            if len(self.buffers) >= 4:        # a few batch shapes at most
                self.buffers.clear()
            self.buffers[key] = bufs
        return bufs

    def run(self, str variant, x, int64_t B, int64_t T, cos, sin, sel_layer, sel_head,
            int nthreads=1):
        """x [B*T, d] int64 is overwritten with the final normalized hidden
        states.  Returns (status, probs [sum n_l * B * T * T] int64)."""
        if variant not in VARIANTS or (variant != "generic" and not cpu_supports(variant)):
            raise ValueError(f"fused variant {variant!r} is not usable on this CPU")
        if nthreads < 1 or B < 1 or T < 1:
            raise ValueError("FusedLlama.run: bad batch shape or thread count")
        cdef cnp.ndarray[int64_t, ndim=2] xa = x
        if not xa.flags.c_contiguous or xa.shape[0] != B * T or xa.shape[1] != self.model.d:
            raise ValueError("FusedLlama.run: x must be C-contiguous [B*T, d] int64")
        cdef cnp.ndarray[int64_t, ndim=2] ca = _c64(cos)
        cdef cnp.ndarray[int64_t, ndim=2] sa = _c64(sin)
        if ca.shape[0] != T or sa.shape[0] != T or ca.shape[1] != self.model.n_rot // 2 \
                or sa.shape[1] != self.model.n_rot // 2:
            raise ValueError("FusedLlama.run: cos/sin must be [T, n_rot/2]")
        cdef cnp.ndarray[int64_t, ndim=1] sl = _c64(sel_layer).reshape(-1)
        cdef cnp.ndarray[int64_t, ndim=1] sh = _c64(sel_head).reshape(-1)
        cdef int64_t n_sel = sl.shape[0], i
        if sh.shape[0] != n_sel:
            raise ValueError("FusedLlama.run: selection lengths")
        for i in range(n_sel):
            if sl[i] < 0 or sl[i] >= self.model.n_layer or sh[i] < 0 or sh[i] >= self.model.H \
                    or (i and sl[i] < sl[i - 1]):
                raise ValueError("FusedLlama.run: selection out of range or not grouped by layer")
        cdef cnp.ndarray[int64_t, ndim=1] probs = np.zeros(max(n_sel, 1) * B * T * T, np.int64)
        bufs = self._buffers(B, T, nthreads)
        cdef poai_fw_buffers b
        b.h = <int64_t *>cnp.PyArray_DATA(bufs["h"])
        b.q = <int64_t *>cnp.PyArray_DATA(bufs["q"])
        b.k = <int64_t *>cnp.PyArray_DATA(bufs["k"])
        b.v = <int64_t *>cnp.PyArray_DATA(bufs["v"])
        b.a = b.h
        b.o = b.q
        b.g = <int64_t *>cnp.PyArray_DATA(bufs["g"])
        b.u = <int64_t *>cnp.PyArray_DATA(bufs["u"])
        b.qa = <int16_t *>cnp.PyArray_DATA(bufs["qa"])
        b.qs = <int64_t *>cnp.PyArray_DATA(bufs["qs"])
        b.qy = <int64_t *>cnp.PyArray_DATA(bufs["qy"])
        b.qsum = <int64_t *>cnp.PyArray_DATA(bufs["qsum"])
        b.att = <int64_t *>cnp.PyArray_DATA(bufs["att"])
        cdef int v = VARIANTS[variant]
        cdef int status
        cdef const int64_t *slp = &sl[0] if n_sel else NULL
        cdef const int64_t *shp = &sh[0] if n_sel else NULL
        with nogil:
            status = poai_forward_llama(&self.model, v, &xa[0, 0], B, T, &ca[0, 0], &sa[0, 0],
                                        slp, shp, n_sel, &probs[0], &b, nthreads)
        if status == 2:
            raise MemoryError("fused forward: no memory for the attention scratch")
        return status, probs[:n_sel * B * T * T]
