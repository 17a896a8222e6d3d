/* objcache.h — compiled host objects on disk, keyed by what made them.
 *
 * The key of a module is a hash of its LLVM IR before optimization (so any change to the kernel
 * IR or to how it is rendered is a different key), the optimization level, the target triple,
 * CPU name and feature string, LLVM's version and CG_OBJCACHE_FORMAT. An entry is one file
 * DIR/KEY.o:
 *     "LOOMOBJ1"  u64 key  u64 object size  u64 FNV-1a 64 of the object  object bytes
 * written to a temporary file in DIR and renamed into place, so ranks and processes that compile
 * the same module at once never see half a file. An entry whose header, size or checksum does
 * not match is corrupt: the caller compiles again and the entry is written anew.
 *
 * DIR is $LOOM_CPU_CACHE when it is set (0 or off: no cache), else $XDG_CACHE_HOME/loom/cpu,
 * else $HOME/.cache/loom/cpu. A directory that cannot be made means no cache, not an error. */
#ifndef LOOM_OBJCACHE_H
#define LOOM_OBJCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bump when the optimization pipeline or the object layout changes without the IR changing. */
#define CG_OBJCACHE_FORMAT 1

typedef enum { CG_OBJ_MISS, CG_OBJ_HIT, CG_OBJ_CORRUPT } cg_obj_lookup;

/* The cache directory (created if missing), malloc'd; NULL when the cache is off or cannot be
 * made. */
char *cg_objcache_dir(void);

/* Reads DIR/KEY.o into a malloc'd buffer (*obj, *n) on a hit. */
cg_obj_lookup cg_objcache_load(const char *dir, uint64_t key, void **obj, size_t *n);

/* Writes the entry atomically; false (and nothing left behind) if it cannot. */
bool cg_objcache_store(const char *dir, uint64_t key, const void *obj, size_t n);

#endif
