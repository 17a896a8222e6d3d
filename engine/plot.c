/* plot.c — `loom plot LOG... -o curve.svg` (jobs.h, docs/profiling.md): the loss (and the
 * validation loss where it was evaluated) of one or several `loom train --log` files against
 * the step or the tokens, in one SVG that loom writes itself: axes with round ticks, a legend
 * naming each file, optionally a logarithmic loss axis. A log is JSON lines (one object a step:
 * "step", "tokens", "loss", "val_loss") or CSV with a header naming those columns. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/jobs.h"

typedef struct {
    double x, loss, val; /* val NaN: not evaluated at this step */
} point;

typedef struct {
    const char *path;
    point *p;
    int n, cap;
} run;

static void add(run *r, point p)
{
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 256;
        point *np = realloc(r->p, (size_t)r->cap * sizeof *np);
        if (!np)
            ir_unreachable("out of memory");
        r->p = np;
    }
    r->p[r->n++] = p;
}

static double json_num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* The column of name in a CSV header, or -1. */
static int column(char *const *cols, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(cols[i], name) == 0)
            return i;
    return -1;
}

/* Splits line at commas in place (at most cap fields). */
static int split(char *line, char **cols, int cap)
{
    int n = 0;
    line[strcspn(line, "\r\n")] = 0;
    for (char *p = line; n < cap;) {
        cols[n++] = p;
        char *c = strchr(p, ',');
        if (!c)
            break;
        *c = 0;
        p = c + 1;
    }
    return n;
}

static bool load(run *r, bool by_tokens, ir_diag *d)
{
    FILE *f = fopen(r->path, "r");
    if (!f) {
        ir_diag_error(d, -1, 0, 0, "plot: cannot read %s: %s", r->path, strerror(errno));
        return false;
    }
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0;
    int cx = -1, cl = -1, cv = -1;
    bool csv = false, ok = true;
    char *cols[64];
    while (ok && getline(&line, &cap, f) >= 0) {
        lineno++;
        const char *s = line + strspn(line, " \t");
        if (!*s || *s == '\n' || *s == '\r')
            continue;
        point p = {NAN, NAN, NAN};
        if (lineno == 1 && *s != '{') { /* a CSV header */
            csv = true;
            int n = split(line, cols, 64);
            cx = column(cols, n, by_tokens ? "tokens" : "step");
            cl = column(cols, n, "loss");
            cv = column(cols, n, "val_loss");
            if (cx < 0 || cl < 0) {
                ir_diag_error(d, -1, 0, 0, "%s:1: a CSV log needs the columns %s and loss (loom train --log writes them)",
                              r->path, by_tokens ? "tokens" : "step");
                ok = false;
            }
            continue;
        }
        if (csv) {
            int n = split(line, cols, 64);
            char *end;
            if (cx >= n || cl >= n) {
                ir_diag_error(d, -1, 0, 0, "%s:%ld: %d columns, fewer than the header's", r->path, lineno, n);
                ok = false;
                break;
            }
            p.x = strtod(cols[cx], &end);
            if (end == cols[cx] || *end) {
                ir_diag_error(d, -1, 0, 0, "%s:%ld: '%s' is not a number", r->path, lineno, cols[cx]);
                ok = false;
                break;
            }
            p.loss = *cols[cl] ? strtod(cols[cl], NULL) : NAN;
            p.val = cv >= 0 && cv < n && *cols[cv] ? strtod(cols[cv], NULL) : NAN;
        } else {
            cJSON *o = cJSON_Parse(s);
            if (!cJSON_IsObject(o)) {
                ir_diag_error(d, -1, 0, 0, "%s:%ld: not a JSON object (a log is JSON lines, or CSV with a header)",
                              r->path, lineno);
                cJSON_Delete(o);
                ok = false;
                break;
            }
            p.x = json_num(o, by_tokens ? "tokens" : "step");
            p.loss = json_num(o, "loss");
            p.val = json_num(o, "val_loss");
            cJSON_Delete(o);
            if (isnan(p.x)) {
                ir_diag_error(d, -1, 0, 0, "%s:%ld: no number \"%s\"", r->path, lineno, by_tokens ? "tokens" : "step");
                ok = false;
                break;
            }
        }
        add(r, p);
    }
    free(line);
    fclose(f);
    if (ok && r->n == 0) {
        ir_diag_error(d, -1, 0, 0, "%s: no steps in the log", r->path);
        ok = false;
    }
    return ok;
}

/* Round ticks over [lo, hi]: a step of 1, 2 or 5 times a power of ten, about n of them. */
static double tick_step(double lo, double hi, int n)
{
    double raw = (hi - lo) / n, p = pow(10, floor(log10(raw))), m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

static void xml_text(FILE *f, const char *s)
{
    for (; *s; s++)
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
}

/* v as a tick label, in the unit the axis's largest value (top) calls for: 20k, 1.5M, 0.3 */
static void number(char *buf, size_t cap, double v, double top)
{
    if (fabs(top) >= 1e6 && v != 0)
        snprintf(buf, cap, "%gM", v / 1e6);
    else if (fabs(top) >= 1e4 && v != 0)
        snprintf(buf, cap, "%gk", v / 1e3);
    else
        snprintf(buf, cap, "%g", v);
}

static const char *colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"};

bool eng_plot(const eng_opts *o, ir_diag *d)
{
    const char *xs = eng_named(o, "--x");
    bool by_tokens = xs && strcmp(xs, "tokens") == 0, log_y = o->log_y;
    if (xs && !by_tokens && strcmp(xs, "step") != 0) {
        ir_diag_error(d, -1, 0, 0, "plot: --x expects step or tokens, got '%s'", xs);
        return false;
    }
    if (!o->file || !o->out) {
        ir_diag_error(d, -1, 0, 0, "plot: usage: loom plot LOG... -o curve.svg (see loom plot --help)");
        return false;
    }
    int n = 1 + o->n_extra;
    run *runs = calloc((size_t)n, sizeof *runs);
    if (!runs)
        ir_unreachable("out of memory");
    bool ok = true;
    for (int i = 0; ok && i < n; i++) {
        runs[i].path = i ? o->extra[i - 1] : o->file;
        ok = load(&runs[i], by_tokens, d);
    }
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int i = 0; ok && i < n; i++)
        for (int k = 0; k < runs[i].n; k++) {
            const point *p = &runs[i].p[k];
            x0 = fmin(x0, p->x), x1 = fmax(x1, p->x);
            for (int j = 0; j < 2; j++) {
                double y = j ? p->val : p->loss;
                if (isfinite(y) && (!log_y || y > 0))
                    y0 = fmin(y0, y), y1 = fmax(y1, y);
            }
        }
    if (ok && !(y0 <= y1)) {
        ir_diag_error(d, -1, 0, 0, "plot: no finite%s loss in the logs", log_y ? " positive" : "");
        ok = false;
    }
    FILE *f = ok ? fopen(o->out, "w") : NULL;
    if (ok && !f) {
        ir_diag_error(d, -1, 0, 0, "plot: cannot write %s: %s", o->out, strerror(errno));
        ok = false;
    }
    if (ok) {
        const double W = 800, H = 500, L = 70, R = 20, T = 40, B = 60;
        if (x1 == x0)
            x1 = x0 + 1;
        if (log_y) {
            y0 = pow(10, floor(log10(y0) * 10) / 10);
            y1 = pow(10, ceil(log10(y1) * 10) / 10);
            if (y1 <= y0)
                y1 = y0 * 10;
        } else {
            double pad = (y1 - y0) * 0.05 + (y1 == y0 ? 0.5 : 0);
            y0 -= pad, y1 += pad;
        }
#define PX(x) (L + ((x) - x0) / (x1 - x0) * (W - L - R))
#define PY(y) (log_y ? T + (log10(y1) - log10(y)) / (log10(y1) - log10(y0)) * (H - T - B) \
                     : T + (y1 - (y)) / (y1 - y0) * (H - T - B))
        fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
                   "font-family=\"sans-serif\" font-size=\"13\">\n", W, H, W, H);
        fprintf(f, "<rect width=\"%.0f\" height=\"%.0f\" fill=\"white\"/>\n", W, H);
        const char *title = eng_named(o, "--title");
        fprintf(f, "<text x=\"%.0f\" y=\"24\" text-anchor=\"middle\" font-size=\"16\">", W / 2);
        xml_text(f, title ? title : "training loss");
        fprintf(f, "</text>\n");
        /* grid and ticks */
        char lab[32];
        double xs_ = tick_step(x0, x1, 8);
        for (double x = ceil(x0 / xs_) * xs_; x <= x1 + xs_ * 1e-9; x += xs_) {
            number(lab, sizeof lab, x, x1);
            fprintf(f, "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" stroke=\"#e5e5e5\"/>\n", PX(x), T, PX(x), H - B);
            fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%s</text>\n", PX(x), H - B + 18, lab);
        }
        if (log_y) {
            for (double dec = pow(10, floor(log10(y0))); dec <= y1; dec *= 10)
                for (int m = 1; m < 10; m++) {
                    double y = dec * m;
                    bool label = m == 1 || m == 2 || m == 5 || log10(y1 / y0) < 0.5;
                    if (y < y0 || y > y1)
                        continue;
                    fprintf(f, "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"%s\"/>\n", L, PY(y), W - R,
                            PY(y), label ? "#e5e5e5" : "#f3f3f3");
                    number(lab, sizeof lab, y, y1);
                    if (label)
                        fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", L - 6, PY(y) + 4, lab);
                }
        } else {
            double ys = tick_step(y0, y1, 6);
            for (double y = ceil(y0 / ys) * ys; y <= y1 + ys * 1e-9; y += ys) {
                number(lab, sizeof lab, fabs(y) < ys * 1e-9 ? 0 : y, y1);
                fprintf(f, "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>\n", L, PY(y), W - R,
                        PY(y));
                fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", L - 6, PY(y) + 4, lab);
            }
        }
        fprintf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"#333\"/>\n", L, T,
                W - L - R, H - T - B);
        fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">%s</text>\n", (L + W - R) / 2, H - 16,
                by_tokens ? "tokens" : "step");
        fprintf(f, "<text transform=\"translate(18 %.0f) rotate(-90)\" text-anchor=\"middle\">loss%s</text>\n",
                (T + H - B) / 2, log_y ? " (log scale)" : "");
        /* the curves: loss solid, validation loss dashed with dots */
        for (int i = 0; i < n; i++) {
            const char *c = colors[i % 8];
            for (int j = 0; j < 2; j++) {
                int pts = 0;
                for (int k = 0; k < runs[i].n; k++) {
                    double y = j ? runs[i].p[k].val : runs[i].p[k].loss;
                    if (!isfinite(y) || (log_y && y <= 0))
                        continue;
                    fprintf(f, "%s%.1f,%.1f", pts++ ? " " : "<polyline fill=\"none\" points=\"", PX(runs[i].p[k].x),
                            PY(y));
                }
                if (pts)
                    fprintf(f, "\" stroke=\"%s\" stroke-width=\"%s\"%s/>\n", c, j ? "2" : "1.5",
                            j ? " stroke-dasharray=\"6 4\"" : "");
                for (int k = 0; j && k < runs[i].n; k++)
                    if (isfinite(runs[i].p[k].val) && (!log_y || runs[i].p[k].val > 0))
                        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", PX(runs[i].p[k].x),
                                PY(runs[i].p[k].val), c);
            }
        }
        /* the legend, top right */
        double lw = 0;
        for (int i = 0; i < n; i++) {
            const char *base = strrchr(runs[i].path, '/');
            double w = 7.5 * (double)strlen(base ? base + 1 : runs[i].path) + 110;
            lw = w > lw ? w : lw;
        }
        double lx = W - R - lw - 10, ly = T + 10;
        fprintf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"white\" fill-opacity=\"0.9\" "
                   "stroke=\"#999\"/>\n", lx, ly, lw, 10 + 36.0 * n);
        for (int i = 0; i < n; i++) {
            const char *c = colors[i % 8], *base = strrchr(runs[i].path, '/');
            double y = ly + 20 + 36.0 * i;
            fprintf(f, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"%s\" stroke-width=\"1.5\"/>\n", lx + 8,
                    y, lx + 36, y, c);
            fprintf(f, "<text x=\"%.0f\" y=\"%.0f\">", lx + 42, y + 4);
            xml_text(f, base ? base + 1 : runs[i].path);
            fprintf(f, " loss</text>\n");
            fprintf(f, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"%s\" stroke-width=\"2\" "
                       "stroke-dasharray=\"6 4\"/>\n", lx + 8, y + 16, lx + 36, y + 16, c);
            fprintf(f, "<text x=\"%.0f\" y=\"%.0f\">", lx + 42, y + 20);
            xml_text(f, base ? base + 1 : runs[i].path);
            fprintf(f, " val loss</text>\n");
        }
        fprintf(f, "</svg>\n");
#undef PX
#undef PY
        if (fclose(f) != 0) {
            ir_diag_error(d, -1, 0, 0, "plot: cannot write %s: %s", o->out, strerror(errno));
            ok = false;
        } else
            printf("wrote %s: %d run%s, loss against %s%s\n", o->out, n, n == 1 ? "" : "s", by_tokens ? "tokens" : "step",
                   log_y ? " (log scale)" : "");
    }
    for (int i = 0; i < n; i++)
        free(runs[i].p);
    free(runs);
    return ok;
}
