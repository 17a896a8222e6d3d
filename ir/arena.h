/* arena.h — bump allocation for compiler data whose lifetime is one graph or one compilation.
 * Everything allocated from an arena is freed at once by ir_arena_free. Allocation never fails
 * (out of memory aborts with a message): compiler data is small next to tensors. */
#ifndef LOOM_ARENA_H
#define LOOM_ARENA_H

#include <stddef.h>

typedef struct ir_arena_block ir_arena_block;
typedef struct {
    ir_arena_block *head;
} ir_arena;

void *ir_arena_alloc(ir_arena *a, size_t size);          /* zeroed, 16-byte aligned */
char *ir_arena_strdup(ir_arena *a, const char *s);
char *ir_arena_strndup(ir_arena *a, const char *s, size_t n);
char *ir_arena_printf(ir_arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ir_arena_free(ir_arena *a);

/* Growable array helper: grows *items (allocated with realloc, not the arena) to hold at least
 * need elements of elem size; aborts on out of memory. */
void ir_grow(void **items, int *cap, int need, size_t elem);

#endif
