/* loss_scale.c — dynamic loss scaling (loss_scale.h). */
#include "engine/loss_scale.h"

#include <math.h>

rt_loss_scale rt_loss_scale_default(void)
{
    return (rt_loss_scale){.scale = 65536.0, .growth = 2.0, .backoff = 0.5, .growth_interval = 2000,
                           .min_scale = 1.0, .max_scale = 16777216.0};
}

bool rt_loss_scale_unscale(const rt_loss_scale *s, float *g, int64_t n)
{
    float inv = (float)(1.0 / s->scale);
    bool finite = true;
    for (int64_t i = 0; i < n; i++) {
        g[i] *= inv;
        finite &= isfinite(g[i]) != 0;
    }
    return finite;
}

bool rt_loss_scale_update(rt_loss_scale *s, bool finite)
{
    s->steps++;
    if (!finite) {
        s->skipped++;
        s->good_steps = 0;
        s->scale = fmax(s->scale * s->backoff, s->min_scale);
        return false;
    }
    if (++s->good_steps >= s->growth_interval) {
        s->good_steps = 0;
        s->scale = fmin(s->scale * s->growth, s->max_scale);
    }
    return true;
}
