/*
 * poai_probe.h -- register-only dot-product peak probes for the benchmark.
 *
 * Each probe runs the instruction sequence that accumulates one SIMD
 * register of products into int32 lanes, on registers only (no loads or
 * stores in the loop), over many independent accumulators, so the measured
 * rate is the core's issue limit for that sequence: the ceiling a matrix
 * product using that instruction could reach.  Non-consensus (timing only).
 *
 *   kind                  sequence per step                          MACs
 *   POAI_PROBE_AVX2_INT16 vpmaddwd ymm + vpaddd ymm                   16
 *   POAI_PROBE_AVX2_INT8  vpmaddubsw ymm + vpmaddwd ymm (x1) + vpaddd  32
 *   POAI_PROBE_VNNI_INT16 vpdpwssd zmm                                32
 *   POAI_PROBE_VNNI_INT8  vpdpbusd zmm                                64
 *   POAI_PROBE_AMX_INT16  tdpbssd + tdpbusd, 16x16 tiles, K = 32     8192
 *                         (int16 x int8 as the amx kernel splits it:
 *                         high and low activation bytes, one 32-block)
 *   POAI_PROBE_AMX_INT8   tdpbssd, 16x16 tiles, K = 64 (full tiles)  16384
 *
 * The AMX probes (tiles only, no loads or stores in the loop) run where
 * poai_cpu_has_amx(); 4 independent accumulator tiles.
 */
#ifndef POAI_PROBE_H
#define POAI_PROBE_H

#include <stdint.h>

#define POAI_PROBE_AVX2_INT16 0
#define POAI_PROBE_AVX2_INT8 1
#define POAI_PROBE_VNNI_INT16 2
#define POAI_PROBE_VNNI_INT8 3
#define POAI_PROBE_AMX_INT16 4
#define POAI_PROBE_AMX_INT8 5

/* Run `iters` loop iterations of probe `kind` (each iteration is a fixed
 * number of steps, see poai_probe.c) and return the number of MACs done;
 * 0 (and nothing run) when this CPU lacks the instructions
 * (poai_cpu_has_avx2 / poai_cpu_has_avx512), -1 for an unknown kind.
 * *sink receives a value that depends on every result, so no compiler can
 * drop the work.  Thread-safe; the caller may run one per thread. */
int64_t poai_dot_probe(int kind, int64_t iters, int64_t *sink);

#endif
