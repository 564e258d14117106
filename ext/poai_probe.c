/*
 * poai_probe.c -- register-only dot-product peak probes (see poai_probe.h).
 *
 * Each probe enables its instruction set per function (target attributes;
 * the rest of the extension stays baseline x86-64) and is entered only when
 * poai_cpu_has_avx2() / poai_cpu_has_avx512() say the CPU can run it.
 *
 * Why inline asm for AVX2: the product of two loop-invariant registers is
 * itself loop-invariant, so with intrinsics a compiler hoists vpmaddwd out of
 * the loop and times only the adds.  An asm block is never hoisted or merged,
 * and it names the exact sequence being timed.  The VNNI instructions take
 * the accumulator as an input, so plain intrinsics cannot be hoisted there;
 * empty asm statements keep the accumulators in registers.
 *
 * The lanes' values wrap freely (SIMD integer adds are modular, no UB); the
 * results only feed the sink.
 */
#include "poai_probe.h"

#include "poai_packed.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define T2 __attribute__((target("avx2")))
#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

/* Independent accumulators per loop iteration: the accumulate latency (1
 * cycle for vpaddd, about 4-5 for vpdp*) times the issue rate (<= 2 per
 * cycle on current cores) is below these counts, so throughput is measured. */
#define AVX2_STEPS 8
#define VNNI_STEPS 12

T2 static int64_t sum_epi32_256(__m256i v) {
    int32_t lanes[8];
    int64_t s = 0;
    _mm256_storeu_si256((__m256i *)lanes, v);
    for (int i = 0; i < 8; i++) s += lanes[i];
    return s;
}

/* int16 x int16 -> int32: t = vpmaddwd(a, b) (16 products summed in pairs),
 * c += t.  16 MACs per step. */
T2 static int64_t probe_avx2_int16(int64_t iters) {
    __m256i a = _mm256_set1_epi16(3), b = _mm256_set1_epi16(-2);
    __m256i c0 = _mm256_setzero_si256(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
    __m256i t0, t1;
    for (int64_t i = 0; i < iters; i++) {
        __asm__ volatile(
            "vpmaddwd %[b], %[a], %[t0]\n\tvpaddd %[t0], %[c0], %[c0]\n\t"
            "vpmaddwd %[b], %[a], %[t1]\n\tvpaddd %[t1], %[c1], %[c1]\n\t"
            "vpmaddwd %[b], %[a], %[t0]\n\tvpaddd %[t0], %[c2], %[c2]\n\t"
            "vpmaddwd %[b], %[a], %[t1]\n\tvpaddd %[t1], %[c3], %[c3]\n\t"
            "vpmaddwd %[b], %[a], %[t0]\n\tvpaddd %[t0], %[c4], %[c4]\n\t"
            "vpmaddwd %[b], %[a], %[t1]\n\tvpaddd %[t1], %[c5], %[c5]\n\t"
            "vpmaddwd %[b], %[a], %[t0]\n\tvpaddd %[t0], %[c6], %[c6]\n\t"
            "vpmaddwd %[b], %[a], %[t1]\n\tvpaddd %[t1], %[c7], %[c7]\n\t"
            : [c0] "+x"(c0), [c1] "+x"(c1), [c2] "+x"(c2), [c3] "+x"(c3), [c4] "+x"(c4),
              [c5] "+x"(c5), [c6] "+x"(c6), [c7] "+x"(c7), [t0] "=&x"(t0), [t1] "=&x"(t1)
            : [a] "x"(a), [b] "x"(b));
    }
    __m256i s = _mm256_add_epi32(_mm256_add_epi32(_mm256_add_epi32(c0, c1), _mm256_add_epi32(c2, c3)),
                                 _mm256_add_epi32(_mm256_add_epi32(c4, c5), _mm256_add_epi32(c6, c7)));
    return sum_epi32_256(s);
}

/* u8 x s8 -> int32 (the ggml/AVX2 int8 dot product): t = vpmaddubsw(a, b)
 * (32 products summed in pairs to int16), t = vpmaddwd(t, ones) (pairs to
 * int32), c += t.  32 MACs per step. */
T2 static int64_t probe_avx2_int8(int64_t iters) {
    __m256i a = _mm256_set1_epi8(3), b = _mm256_set1_epi8(-2), ones = _mm256_set1_epi16(1);
    __m256i c0 = _mm256_setzero_si256(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
    __m256i t0, t1;
    for (int64_t i = 0; i < iters; i++) {
#define STEP8(t, c) "vpmaddubsw %[b], %[a], %[" #t "]\n\tvpmaddwd %[ones], %[" #t "], %[" #t "]\n\t" \
                    "vpaddd %[" #t "], %[" #c "], %[" #c "]\n\t"
        __asm__ volatile(
            STEP8(t0, c0) STEP8(t1, c1) STEP8(t0, c2) STEP8(t1, c3)
            STEP8(t0, c4) STEP8(t1, c5) STEP8(t0, c6) STEP8(t1, c7)
            : [c0] "+x"(c0), [c1] "+x"(c1), [c2] "+x"(c2), [c3] "+x"(c3), [c4] "+x"(c4),
              [c5] "+x"(c5), [c6] "+x"(c6), [c7] "+x"(c7), [t0] "=&x"(t0), [t1] "=&x"(t1)
            : [a] "x"(a), [b] "x"(b), [ones] "x"(ones));
#undef STEP8
    }
    __m256i s = _mm256_add_epi32(_mm256_add_epi32(_mm256_add_epi32(c0, c1), _mm256_add_epi32(c2, c3)),
                                 _mm256_add_epi32(_mm256_add_epi32(c4, c5), _mm256_add_epi32(c6, c7)));
    return sum_epi32_256(s);
}

/* VNNI: c = vpdpwssd(c, a, b) (32 int16 products into 16 int32 lanes) or
 * c = vpdpbusd(c, a, b) (64 u8 x s8 products); one instruction per step. */
#define VNNI_PROBE(NAME, INSN, A, B)                                                               \
    T512 static int64_t NAME(int64_t iters) {                                                    \
        __m512i a = A, b = B;                                                                     \
        __m512i c0 = _mm512_setzero_si512(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0;         \
        __m512i c6 = c0, c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;                           \
        for (int64_t i = 0; i < iters; i++) {                                                     \
            c0 = INSN(c0, a, b); c1 = INSN(c1, a, b); c2 = INSN(c2, a, b);                        \
            c3 = INSN(c3, a, b); c4 = INSN(c4, a, b); c5 = INSN(c5, a, b);                        \
            c6 = INSN(c6, a, b); c7 = INSN(c7, a, b); c8 = INSN(c8, a, b);                        \
            c9 = INSN(c9, a, b); c10 = INSN(c10, a, b); c11 = INSN(c11, a, b);                    \
            __asm__ volatile("" : "+v"(c0), "+v"(c1), "+v"(c2), "+v"(c3), "+v"(c4), "+v"(c5));    \
            __asm__ volatile("" : "+v"(c6), "+v"(c7), "+v"(c8), "+v"(c9), "+v"(c10), "+v"(c11)); \
        }                                                                                         \
        __m512i s = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(c0, c1),                   \
                                                      _mm512_add_epi32(c2, c3)),                  \
                                     _mm512_add_epi32(_mm512_add_epi32(c4, c5),                   \
                                                      _mm512_add_epi32(c6, c7)));                 \
        s = _mm512_add_epi32(s, _mm512_add_epi32(_mm512_add_epi32(c8, c9),                        \
                                                 _mm512_add_epi32(c10, c11)));                    \
        return _mm512_reduce_add_epi32(s);                                                        \
    }

VNNI_PROBE(probe_vnni_int16, _mm512_dpwssd_epi32, _mm512_set1_epi16(3), _mm512_set1_epi16(-2))
VNNI_PROBE(probe_vnni_int8, _mm512_dpbusd_epi32, _mm512_set1_epi8(3), _mm512_set1_epi8(-2))

#if defined(__linux__)
#include <string.h>

/* AMX: tmm0-3 accumulators (16 x 64 bytes), tmm4/tmm5 A (16 x K bytes),
 * tmm6/tmm7 B (K/4 x 64); K = 32 (int16 probe) or 64 (int8 probe). */
static void amx_probe_config(int kbytes) {
    struct {
        uint8_t palette, start_row, reserved[14];
        uint16_t colsb[16];
        uint8_t rows[16];
    } c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int t = 0; t < 4; t++) c.rows[t] = 16, c.colsb[t] = 64;
    for (int t = 4; t < 6; t++) c.rows[t] = 16, c.colsb[t] = (uint16_t)kbytes;
    for (int t = 6; t < 8; t++) c.rows[t] = (uint8_t)(kbytes / 4), c.colsb[t] = 64;
    __asm__ volatile("ldtilecfg (%0)" ::"r"(&c) : "memory");
}

static int64_t probe_amx(int int16, int64_t iters) {
    int32_t out[256];
    amx_probe_config(int16 ? 32 : 64);
    __asm__ volatile("tilezero %%tmm0\n\ttilezero %%tmm1\n\ttilezero %%tmm2\n\ttilezero %%tmm3\n\t"
                     "tilezero %%tmm4\n\ttilezero %%tmm5\n\ttilezero %%tmm6\n\ttilezero %%tmm7" ::: "memory");
    for (int64_t i = 0; i < iters; i++) {
        if (int16) /* the kernel's pair: high bytes signed, low bytes unsigned */
            __asm__ volatile("tdpbssd %%tmm6, %%tmm4, %%tmm0\n\ttdpbusd %%tmm6, %%tmm5, %%tmm1\n\t"
                             "tdpbssd %%tmm7, %%tmm4, %%tmm2\n\ttdpbusd %%tmm7, %%tmm5, %%tmm3" ::: "memory");
        else
            __asm__ volatile("tdpbssd %%tmm6, %%tmm4, %%tmm0\n\ttdpbssd %%tmm7, %%tmm4, %%tmm1\n\t"
                             "tdpbssd %%tmm6, %%tmm5, %%tmm2\n\ttdpbssd %%tmm7, %%tmm5, %%tmm3" ::: "memory");
    }
    __asm__ volatile("tilestored %%tmm0, (%0,%1,1)" ::"r"(out), "r"((long)64) : "memory");
    __asm__ volatile("tilerelease" ::: "memory");
    return out[0];
}
#endif

int64_t poai_dot_probe(int kind, int64_t iters, int64_t *sink) {
    if (iters < 0) iters = 0;
    switch (kind) {
    case POAI_PROBE_AVX2_INT16:
        if (!poai_cpu_has_avx2()) return 0;
        *sink = probe_avx2_int16(iters);
        return iters * AVX2_STEPS * 16;
    case POAI_PROBE_AVX2_INT8:
        if (!poai_cpu_has_avx2()) return 0;
        *sink = probe_avx2_int8(iters);
        return iters * AVX2_STEPS * 32;
    case POAI_PROBE_VNNI_INT16:
        if (!poai_cpu_has_avx512()) return 0;
        *sink = probe_vnni_int16(iters);
        return iters * VNNI_STEPS * 32;
    case POAI_PROBE_VNNI_INT8:
        if (!poai_cpu_has_avx512()) return 0;
        *sink = probe_vnni_int8(iters);
        return iters * VNNI_STEPS * 64;
#if defined(__linux__)
    case POAI_PROBE_AMX_INT16: /* 4 tile ops = 2 int16 x int8 products of 16 x 16 x 32 */
        if (!poai_cpu_has_amx()) return 0;
        *sink = probe_amx(1, iters);
        return iters * 2 * 16 * 16 * 32;
    case POAI_PROBE_AMX_INT8: /* 4 tile ops of 16 x 16 x 64 */
        if (!poai_cpu_has_amx()) return 0;
        *sink = probe_amx(0, iters);
        return iters * 4 * 16 * 16 * 64;
#endif
    default:
        return -1;
    }
}
#else
int64_t poai_dot_probe(int kind, int64_t iters, int64_t *sink) {
    (void)iters;
    *sink = 0;
    return kind >= POAI_PROBE_AVX2_INT16 && kind <= POAI_PROBE_AMX_INT8 ? 0 : -1;
}
#endif
