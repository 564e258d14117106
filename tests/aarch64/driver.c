/*
 * driver.c -- runs poai's packed matrix product on matrices and activations
 * read from a file, for tests/test_aarch64.py (cross-compiled for AArch64
 * and run under qemu-user, or compiled for the host).  Not part of the
 * extension.
 *
 *   driver IN OUT THREADS VARIANT...
 *
 * VARIANT: a POAI_VARIANT_* id (0 generic, 3 NEON); THREADS >= 1: the
 * OpenMP threads of every product (the bits do not depend on them).
 *
 * Every integer is little-endian (both targets are).  IN:
 *   "POAIMM01", int64 ncases, then per case
 *     int64 rows, K, wbits (8 or 4), T, flags (1 psc1, 2 pmn, 4 pmn1), 0
 *     int64 x [T * K]                        activations (Q16)
 *     uint8 wp [nrs * ng * 64 * wbits]       packed weights (poai_packed.h)
 *     int32 psc0 [nrs * ng * 16], then psc1, pmn, pmn1 where flags say
 * OUT:
 *   "POAIMY01", int64 ncases, int64 nvariants, int64 variants [nvariants],
 *   then per case and variant int64 y [T * rows]
 * and on stdout one line "neon=<poai_cpu_has_neon()>".  Bad input: a message
 * on stderr and exit status 2.
 */
#include "poai_packed.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *what) {
    fprintf(stderr, "driver: %s\n", what);
    exit(2);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) die("out of memory");
    return p;
}

static void read_exact(FILE *f, void *p, size_t n) {
    if (fread(p, 1, n, f) != n) die("input file is truncated");
}

static int64_t read_i64(FILE *f) {
    int64_t v;
    read_exact(f, &v, 8);
    return v;
}

static void *read_array(FILE *f, size_t n) {
    void *p = xmalloc(n);
    read_exact(f, p, n);
    return p;
}

static void write_exact(FILE *f, const void *p, size_t n) {
    if (fwrite(p, 1, n, f) != n) die("cannot write the output file");
}

int main(int argc, char **argv) {
    if (argc < 5) die("usage: driver IN OUT THREADS VARIANT...");
    char *end;
    long nthreads = strtol(argv[3], &end, 10);
    if (*end || nthreads < 1 || nthreads > 64) die("THREADS is 1..64");
    int nv = argc - 4;
    int64_t variants[16];
    if (nv > 16) die("at most 16 variants");
    for (int i = 0; i < nv; i++) {
        variants[i] = strtol(argv[4 + i], &end, 10);
        if (*end || variants[i] < 0 || variants[i] > 3) die("a variant is an id 0..3");
    }
    FILE *in = fopen(argv[1], "rb");
    if (!in) die("cannot open the input file");
    FILE *out = fopen(argv[2], "wb");
    if (!out) die("cannot open the output file");
    char magic[8];
    read_exact(in, magic, 8);
    if (memcmp(magic, "POAIMM01", 8)) die("input file: bad magic");
    int64_t ncases = read_i64(in);
    if (ncases < 0 || ncases > 100000) die("input file: bad case count");
    write_exact(out, "POAIMY01", 8);
    write_exact(out, &ncases, 8);
    int64_t nv64 = nv;
    write_exact(out, &nv64, 8);
    write_exact(out, variants, 8 * (size_t)nv);
    for (int64_t c = 0; c < ncases; c++) {
        int64_t rows = read_i64(in), K = read_i64(in), wbits = read_i64(in), T = read_i64(in);
        int64_t flags = read_i64(in);
        (void)read_i64(in);
        if (rows < 1 || rows > (1 << 16) || K < 32 || K > (1 << 16) || K % 32 || T < 1 ||
            T > 4096 || (wbits != 8 && wbits != 4) || flags < 0 || flags > 7)
            die("input file: bad case header");
        if ((flags & 4) && (flags & 3) != 3) die("input file: pmn1 needs psc1 and pmn");
        int64_t g = poai_packed_group(K), ng = K / 32 / g, nrs = poai_packed_rowsets(rows, K);
        size_t nl = (size_t)(nrs * ng * 16);
        int64_t *x = read_array(in, 8 * (size_t)(T * K));
        for (int64_t i = 0; i < T * K; i++)
            if (x[i] < -2147483647 || x[i] > 2147483647) die("input file: |x| >= 2^31");
        poai_pmat w = {rows, K, (int)wbits, 0, 0, 0, 0, 0};
        uint8_t *wp = read_array(in, nl * 4 * (size_t)wbits);
        int32_t *psc0 = read_array(in, 4 * nl);
        int32_t *psc1 = flags & 1 ? read_array(in, 4 * nl) : 0;
        int32_t *pmn = flags & 2 ? read_array(in, 4 * nl) : 0;
        int32_t *pmn1 = flags & 4 ? read_array(in, 4 * nl) : 0;
        w.wp = wp;
        w.psc0 = psc0;
        w.psc1 = psc1;
        w.pmn = pmn;
        w.pmn1 = pmn1;
        /* the quantized activations (same bits under every variant) */
        int16_t *qa = xmalloc(2 * (size_t)(T * K));
        int64_t *s = xmalloc(8 * (size_t)T * nl / (size_t)nrs);
        int64_t *asum = xmalloc(8 * (size_t)T * nl / (size_t)nrs);
        int64_t *ysh = xmalloc(8 * (size_t)T);
        int64_t *y = xmalloc(8 * (size_t)(T * rows));
        for (int i = 0; i < nv; i++) {
            int v = (int)variants[i];
            poai_quantize_packed(v, x, T, K, qa, s, ysh, asum, (int)nthreads);
            poai_matmul_pmat(v, qa, s, ysh, asum, T, &w, y, (int)nthreads);
            write_exact(out, y, 8 * (size_t)(T * rows));
        }
        free(x), free(wp), free(psc0), free(psc1), free(pmn), free(pmn1);
        free(qa), free(s), free(asum), free(ysh), free(y);
    }
    if (fgetc(in) != EOF) die("input file: trailing bytes");
    fclose(in);
    if (fclose(out)) die("cannot write the output file");
    printf("neon=%d\n", poai_cpu_has_neon());
    return 0;
}
