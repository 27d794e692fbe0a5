/* Little-endian loads and stores that are safe at any alignment. */
#ifndef RC_ENDIAN_H
#define RC_ENDIAN_H
#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define RC_BSWAP16(x) __builtin_bswap16(x)
#define RC_BSWAP32(x) __builtin_bswap32(x)
#define RC_BSWAP64(x) __builtin_bswap64(x)
#else
#define RC_BSWAP16(x) (x)
#define RC_BSWAP32(x) (x)
#define RC_BSWAP64(x) (x)
#endif

static inline uint16_t rc_le16(const unsigned char *p) { uint16_t v; memcpy(&v, p, 2); return RC_BSWAP16(v); }
static inline uint32_t rc_le32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return RC_BSWAP32(v); }
static inline uint64_t rc_le64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return RC_BSWAP64(v); }
static inline void rc_put16(unsigned char *p, uint16_t v) { v = RC_BSWAP16(v); memcpy(p, &v, 2); }
static inline void rc_put32(unsigned char *p, uint32_t v) { v = RC_BSWAP32(v); memcpy(p, &v, 4); }
static inline void rc_put64(unsigned char *p, uint64_t v) { v = RC_BSWAP64(v); memcpy(p, &v, 8); }
#endif
