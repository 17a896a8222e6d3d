/* checksum.c — checkpoint checksums (checksum.h). */
#include "io/checksum.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static uint64_t word(const uint8_t *p)
{
    uint64_t w = 0;
    for (int i = 7; i >= 0; i--)
        w = w << 8 | p[i];
    return w;
}

static uint64_t mix(uint64_t h, uint64_t w)
{
    h = (h ^ w) * 0x100000001b3ull;
    return h << 29 | h >> 35;
}

void rt_sum_init(rt_sum *s) { *s = (rt_sum){.h = 0xcbf29ce484222325ull}; }

void rt_sum_add(rt_sum *s, const void *data, size_t n)
{
    const uint8_t *p = data;
    s->len += n;
    while (n > 0 && s->n_tail > 0) { /* finish the word begun before */
        s->tail[s->n_tail++] = *p++, n--;
        if (s->n_tail == 8)
            s->h = mix(s->h, word(s->tail)), s->n_tail = 0;
    }
    for (; n >= 8; p += 8, n -= 8)
        s->h = mix(s->h, word(p));
    memcpy(s->tail + s->n_tail, p, n);
    s->n_tail += (int)n;
}

uint64_t rt_sum_final(const rt_sum *s)
{
    uint64_t h = s->h;
    if (s->n_tail > 0) {
        uint8_t last[8] = {0};
        memcpy(last, s->tail, (size_t)s->n_tail);
        h = mix(h, word(last));
    }
    return h ^ s->len;
}

void rt_sum_str(uint64_t sum, char buf[24]) { snprintf(buf, 24, "sum64:%016" PRIx64, sum); }
