/* arena.c — bump allocator (see arena.h). Blocks are at least 64 KiB; big requests get their own. */
#include "ir/arena.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ir_arena_block {
    ir_arena_block *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "loom: out of memory (%zu bytes)\n", n);
        abort();
    }
    return p;
}

void *ir_arena_alloc(ir_arena *a, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    ir_arena_block *b = a->head;
    if (!b || b->cap - b->used < size) {
        size_t cap = size > 65536 ? size : 65536;
        b = xmalloc(sizeof *b + cap);
        b->used = 0;
        b->cap = cap;
        b->next = a->head;
        a->head = b;
    }
    void *p = b->data + b->used;
    b->used += size;
    memset(p, 0, size);
    return p;
}

char *ir_arena_strndup(ir_arena *a, const char *s, size_t n)
{
    char *p = ir_arena_alloc(a, n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

char *ir_arena_strdup(ir_arena *a, const char *s)
{
    return ir_arena_strndup(a, s, strlen(s));
}

char *ir_arena_printf(ir_arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *p = ir_arena_alloc(a, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

void ir_arena_free(ir_arena *a)
{
    for (ir_arena_block *b = a->head, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    a->head = NULL;
}

void ir_grow(void **items, int *cap, int need, size_t elem)
{
    if (need <= *cap)
        return;
    int c = *cap ? *cap : 8;
    while (c < need)
        c *= 2;
    void *p = realloc(*items, (size_t)c * elem);
    if (!p) {
        fprintf(stderr, "loom: out of memory\n");
        abort();
    }
    *items = p;
    *cap = c;
}
