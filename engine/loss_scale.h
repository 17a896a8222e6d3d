/* loss_scale.h — dynamic loss scaling for fp16 training, as PyTorch's GradScaler does it.
 *
 * fp16 holds magnitudes up to 65504 and loses gradients below ~6e-8 (2^-24). Training scales
 * the loss by `scale` before the backward pass, so that small gradients survive in fp16; the
 * optimizer then sees gradients divided by the same scale. Per step:
 *   1. gradients of scale · loss are computed (the scale bound as an input of the graph);
 *   2. rt_loss_scale_unscale divides each gradient buffer by the scale (exact: a power of two)
 *      and reports whether every element is finite;
 *   3. rt_loss_scale_update(&s, finite) says whether to apply the step: a step with an inf or
 *      NaN gradient is skipped and the scale halved; after `growth_interval` (2000) good steps
 *      in a row the scale doubles. The scale stays within [min_scale, max_scale].
 * A pure unit: no graph, no device; the caller owns the buffers.
 */
#ifndef LOOM_RT_LOSS_SCALE_H
#define LOOM_RT_LOSS_SCALE_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    double scale;           /* the scale for the next step */
    double growth;          /* factor after growth_interval good steps (2) */
    double backoff;         /* factor after an overflow (0.5) */
    int growth_interval;    /* good steps in a row before growing (2000) */
    double min_scale;       /* floor (1): an overflow at the floor still skips the step */
    double max_scale;       /* ceiling (2^24) */
    int good_steps;         /* good steps since the scale last changed or a step overflowed */
    int64_t steps, skipped; /* steps seen, steps skipped */
} rt_loss_scale;

/* scale 65536 (2^16), growth 2, backoff 0.5, interval 2000, floor 1, ceiling 2^24. */
rt_loss_scale rt_loss_scale_default(void);

/* Multiplies g[0..n) by 1/s->scale in place; true if every result is finite (an inf or NaN
 * element leaves the step to be skipped). */
bool rt_loss_scale_unscale(const rt_loss_scale *s, float *g, int64_t n);

/* Records one step whose gradients were all finite (or not) and moves the scale; returns true
 * if the optimizer should apply this step, false if it must be skipped. */
bool rt_loss_scale_update(rt_loss_scale *s, bool finite);

#endif
