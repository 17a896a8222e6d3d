/* checksum.h — the checksum of checkpoint files: 64 bits over a byte stream, fed in pieces.
 *
 * Defined as: h = 0xcbf29ce484222325; the stream is taken in 8-byte little-endian words w (the
 * last word zero-padded), each h = (h ^ w) · 0x100000001b3 mod 2^64, rotated left by 29; finally
 * h ^= the stream's length in bytes. Word at a time (several GB/s), not a cryptographic hash: it
 * catches flipped bits and torn files, not an adversary. Written "sum64:" + 16 hex digits. */
#ifndef LOOM_IO_CHECKSUM_H
#define LOOM_IO_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t h, len;
    uint8_t tail[8]; /* bytes not yet a whole word */
    int n_tail;
} rt_sum;

void rt_sum_init(rt_sum *s);
void rt_sum_add(rt_sum *s, const void *data, size_t n);
/* The checksum of everything added ("sum64:%016llx" into buf, 24 bytes). */
uint64_t rt_sum_final(const rt_sum *s);
void rt_sum_str(uint64_t sum, char buf[24]);

#endif
