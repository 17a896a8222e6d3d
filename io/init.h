/* init.h — deterministic parameter initialization (`loom init`, and training from scratch).
 *
 * A parameter's values depend only on (seed, its external name, init, scale, element index):
 * never on the order in which parameters are visited, on which other parameters exist, or on
 * how the work is split into chunks. So renaming one parameter, adding a layer or sharding a
 * tensor across ranks leaves every other value unchanged.
 *
 * Generator: a counter-based SplitMix64 stream per parameter.
 *   key     = mix64(fnv1a64(name) ^ mix64(seed + GAMMA))          GAMMA = 0x9E3779B97F4A7C15
 *   u64(c)  = mix64(key + (c + 1) · GAMMA)                         (c: counter, 0, 1, 2, ...)
 * where mix64 is SplitMix64's output function (Steele, Lea, Flood 2014; the finalizer used by
 * java.util.SplittableRandom). A uniform in [0, 1) is (u64 >> 11) · 2^-53.
 *   uniform(a):  element i = −a + 2a · U(i)                        U(i) from counter i
 *   normal(std): Box–Muller on the pair p = i / 2 (counters 2p and 2p + 1):
 *                r = sqrt(−2 ln(1 − U(2p))), θ = 2π U(2p + 1);
 *                element 2p = std · r cos θ, element 2p + 1 = std · r sin θ
 *   zeros, ones, const(v): 0, 1, v.
 */
#ifndef LOOM_RT_INIT_H
#define LOOM_RT_INIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ir/diag.h"
#include "ir/ir.h"
#include "runtime/threadpool.h"

/* True when `init` names a known initializer (zeros ones normal uniform const). */
bool rt_init_known(const char *init);

/* Writes elements [first, first + count) of the parameter `name` initialized by `init` with
 * `scale` (std for normal, bound a of U(−a, a) for uniform, the value for const; unused
 * otherwise) into dst[0..count). Values are exact doubles; round them to the parameter's dtype
 * when storing. An unknown init is a compiler bug (the verifier rejects it), so it aborts. */
void rt_init_fill(const char *init, double scale, const char *name, uint64_t seed, size_t first,
                  size_t count, double *dst);

/* The same for a param node: its init/scale attributes and external name. */
void rt_init_param(const ir_node *param, uint64_t seed, size_t first, size_t count, double *dst);

/* The same values rounded to dtype dt (a float dtype) and stored in dst, computed on pool's
 * threads (NULL: this one) in chunks, with no array of doubles: the numbers of rt_init_param,
 * at memory speed. */
void rt_init_param_as(const ir_node *param, uint64_t seed, size_t first, size_t count, ir_dtype dt, void *dst,
                      rt_pool *pool);

#endif
