/*
 * CRC32C (Castagnoli, reflected polynomial 0x82F63B78), as in RFC 3720 (iSCSI) appendix B.4.
 *
 * Three implementations, one chosen at import by rc_crc32c_init():
 *   - "sse4.2":  x86-64 crc32 instruction, three independent streams over large blocks
 *                (the instruction has a latency of 3 cycles but a throughput of 1 per cycle),
 *                merged with a precomputed "shift by N zero bytes" operator;
 *   - "armv8":   the ARMv8 CRC32C instructions, same three-stream scheme;
 *   - "table":   slicing-by-8 tables, portable C.
 *
 * The register convention: rc_crc32c_update(crc, p, n) takes and returns the *finished* CRC
 * (pre- and post-inverted), so it chains: update(update(0, a), b) == update(0, a || b).
 */
#ifndef RC_CRC32C_H
#define RC_CRC32C_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define RC_CRC32C_POLY 0x82F63B78u

/* Block sizes of the three-stream scheme. */
#define RC_CRC_LONG 8192
#define RC_CRC_SHORT 256

static uint32_t rc_crc_table[8][256];
static uint32_t rc_crc_shift_long[4][256];
static uint32_t rc_crc_shift_short[4][256];

typedef uint32_t (*rc_crc_raw_fn)(uint32_t reg, const unsigned char *p, size_t n);
static rc_crc_raw_fn rc_crc_raw = NULL;
static const char *rc_crc_impl_name = "uninitialised";

static inline uint64_t rc_load64(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* ---- portable slicing-by-8 ------------------------------------------------------------ */

static uint32_t rc_crc_raw_table(uint32_t reg, const unsigned char *p, size_t n) {
    while (n && ((uintptr_t)p & 7)) {
        reg = rc_crc_table[0][(reg ^ *p++) & 0xff] ^ (reg >> 8);
        n--;
    }
    while (n >= 8) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        uint64_t w = rc_load64(p) ^ reg;
        reg = rc_crc_table[7][w & 0xff] ^ rc_crc_table[6][(w >> 8) & 0xff] ^
              rc_crc_table[5][(w >> 16) & 0xff] ^ rc_crc_table[4][(w >> 24) & 0xff] ^
              rc_crc_table[3][(w >> 32) & 0xff] ^ rc_crc_table[2][(w >> 40) & 0xff] ^
              rc_crc_table[1][(w >> 48) & 0xff] ^ rc_crc_table[0][w >> 56];
#else
        int k;
        for (k = 0; k < 8; k++) reg = rc_crc_table[0][(reg ^ p[k]) & 0xff] ^ (reg >> 8);
#endif
        p += 8;
        n -= 8;
    }
    while (n--) reg = rc_crc_table[0][(reg ^ *p++) & 0xff] ^ (reg >> 8);
    return reg;
}

/* Apply a "shift over N zero bytes" operator, stored as four byte tables. */
static inline uint32_t rc_crc_shift(uint32_t (*t)[256], uint32_t reg) {
    return t[0][reg & 0xff] ^ t[1][(reg >> 8) & 0xff] ^ t[2][(reg >> 16) & 0xff] ^ t[3][reg >> 24];
}

static void rc_crc_build_shift(uint32_t (*t)[256], size_t nbytes) {
    /* The operator is linear over GF(2): compute it on the 32 basis vectors, then tabulate. */
    uint32_t basis[32];
    static const unsigned char zeros[64] = {0};
    int b, k, v;
    for (b = 0; b < 32; b++) {
        uint32_t reg = 1u << b;
        size_t left = nbytes;
        while (left) {
            size_t step = left < sizeof zeros ? left : sizeof zeros;
            reg = rc_crc_raw_table(reg, zeros, step);
            left -= step;
        }
        basis[b] = reg;
    }
    for (k = 0; k < 4; k++) {
        for (v = 0; v < 256; v++) {
            uint32_t acc = 0;
            for (b = 0; b < 8; b++)
                if (v & (1 << b)) acc ^= basis[8 * k + b];
            t[k][v] = acc;
        }
    }
}

/* ---- x86-64 SSE4.2 --------------------------------------------------------------------- */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define RC_HAVE_X86 1
#include <cpuid.h>

__attribute__((target("sse4.2"))) static uint32_t rc_crc_raw_sse42(uint32_t reg,
                                                                     const unsigned char *p,
                                                                     size_t n) {
    uint64_t c0 = reg;
    /* Aligning the loads pays only over the long streams below; a record's header and a
     * small payload (most of what is checked) go straight to 8-byte loads, unaligned ones
     * being as fast on x86-64, and a tail of 4, 2 and 1 bytes: at most three steps there
     * where one byte at a time took up to 14. */
    if (n >= 3 * RC_CRC_SHORT) {
        while ((uintptr_t)p & 7) {
            c0 = __builtin_ia32_crc32qi((uint32_t)c0, *p++);
            n--;
        }
    }
    /* Three streams over consecutive blocks of LONG bytes, then of SHORT bytes. */
    while (n >= 3 * RC_CRC_LONG) {
        uint64_t c1 = 0, c2 = 0;
        const unsigned char *end = p + RC_CRC_LONG;
        do {
            c0 = __builtin_ia32_crc32di(c0, rc_load64(p));
            c1 = __builtin_ia32_crc32di(c1, rc_load64(p + RC_CRC_LONG));
            c2 = __builtin_ia32_crc32di(c2, rc_load64(p + 2 * RC_CRC_LONG));
            p += 8;
        } while (p < end);
        c0 = rc_crc_shift(rc_crc_shift_long, (uint32_t)c0) ^ c1;
        c0 = rc_crc_shift(rc_crc_shift_long, (uint32_t)c0) ^ c2;
        p += 2 * RC_CRC_LONG;
        n -= 3 * RC_CRC_LONG;
    }
    while (n >= 3 * RC_CRC_SHORT) {
        uint64_t c1 = 0, c2 = 0;
        const unsigned char *end = p + RC_CRC_SHORT;
        do {
            c0 = __builtin_ia32_crc32di(c0, rc_load64(p));
            c1 = __builtin_ia32_crc32di(c1, rc_load64(p + RC_CRC_SHORT));
            c2 = __builtin_ia32_crc32di(c2, rc_load64(p + 2 * RC_CRC_SHORT));
            p += 8;
        } while (p < end);
        c0 = rc_crc_shift(rc_crc_shift_short, (uint32_t)c0) ^ c1;
        c0 = rc_crc_shift(rc_crc_shift_short, (uint32_t)c0) ^ c2;
        p += 2 * RC_CRC_SHORT;
        n -= 3 * RC_CRC_SHORT;
    }
    while (n >= 8) {
        c0 = __builtin_ia32_crc32di(c0, rc_load64(p));
        p += 8;
        n -= 8;
    }
    if (n & 4) {
        uint32_t w;
        memcpy(&w, p, 4);
        c0 = __builtin_ia32_crc32si((uint32_t)c0, w);
        p += 4;
    }
    if (n & 2) {
        uint16_t h;
        memcpy(&h, p, 2);
        c0 = __builtin_ia32_crc32hi((uint32_t)c0, h);
        p += 2;
    }
    if (n & 1) c0 = __builtin_ia32_crc32qi((uint32_t)c0, *p);
    return (uint32_t)c0;
}

static int rc_cpu_has_crc(void) {
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    return (c & bit_SSE4_2) != 0;
}
#endif

/* ---- ARMv8 CRC extension ---------------------------------------------------------------- */
#if defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
#define RC_HAVE_ARM 1
#if defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_CRC32
#define HWCAP_CRC32 (1 << 7)
#endif
#endif

__attribute__((target("+crc"))) static uint32_t rc_crc_raw_armv8(uint32_t reg,
                                                                   const unsigned char *p,
                                                                   size_t n) {
    uint32_t c0 = reg;
    while (n && ((uintptr_t)p & 7)) {
        c0 = __builtin_aarch64_crc32cb(c0, *p++);
        n--;
    }
    while (n >= 3 * RC_CRC_LONG) {
        uint32_t c1 = 0, c2 = 0;
        const unsigned char *end = p + RC_CRC_LONG;
        do {
            c0 = __builtin_aarch64_crc32cx(c0, rc_load64(p));
            c1 = __builtin_aarch64_crc32cx(c1, rc_load64(p + RC_CRC_LONG));
            c2 = __builtin_aarch64_crc32cx(c2, rc_load64(p + 2 * RC_CRC_LONG));
            p += 8;
        } while (p < end);
        c0 = rc_crc_shift(rc_crc_shift_long, c0) ^ c1;
        c0 = rc_crc_shift(rc_crc_shift_long, c0) ^ c2;
        p += 2 * RC_CRC_LONG;
        n -= 3 * RC_CRC_LONG;
    }
    while (n >= 8) {
        c0 = __builtin_aarch64_crc32cx(c0, rc_load64(p));
        p += 8;
        n -= 8;
    }
    while (n--) c0 = __builtin_aarch64_crc32cb(c0, *p++);
    return c0;
}

static int rc_cpu_has_crc(void) {
#if defined(__linux__)
    return (getauxval(AT_HWCAP) & HWCAP_CRC32) != 0;
#elif defined(__APPLE__)
    return 1; /* every Apple arm64 CPU has the CRC extension */
#else
    return 0;
#endif
}
#endif

/* ---- dispatch ---------------------------------------------------------------------------- */

static void rc_crc32c_init(int force_table) {
    uint32_t i, j;
    for (i = 0; i < 256; i++) {
        uint32_t c = i;
        for (j = 0; j < 8; j++) c = (c & 1) ? (c >> 1) ^ RC_CRC32C_POLY : (c >> 1);
        rc_crc_table[0][i] = c;
    }
    for (i = 0; i < 256; i++)
        for (j = 1; j < 8; j++)
            rc_crc_table[j][i] = (rc_crc_table[j - 1][i] >> 8) ^ rc_crc_table[0][rc_crc_table[j - 1][i] & 0xff];
    rc_crc_build_shift(rc_crc_shift_long, RC_CRC_LONG);
    rc_crc_build_shift(rc_crc_shift_short, RC_CRC_SHORT);
    rc_crc_raw = rc_crc_raw_table;
    rc_crc_impl_name = "table";
    if (force_table) return;
#if defined(RC_HAVE_X86)
    if (rc_cpu_has_crc()) {
        rc_crc_raw = rc_crc_raw_sse42;
        rc_crc_impl_name = "sse4.2";
    }
#elif defined(RC_HAVE_ARM)
    if (rc_cpu_has_crc()) {
        rc_crc_raw = rc_crc_raw_armv8;
        rc_crc_impl_name = "armv8";
    }
#endif
}

static inline uint32_t rc_crc32c_update(uint32_t crc, const unsigned char *p, size_t n) {
    return ~rc_crc_raw(~crc, p, n);
}

static inline uint32_t rc_crc32c_table_update(uint32_t crc, const unsigned char *p, size_t n) {
    return ~rc_crc_raw_table(~crc, p, n);
}

#endif /* RC_CRC32C_H */
