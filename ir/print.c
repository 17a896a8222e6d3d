/* print.c — the textual IR printer (format: docs/ir.md "Text form").
 *
 * Output is canonical so that print → parse → print is the identity:
 *  - values are renumbered %0, %1, ... over the non-output nodes, in graph order;
 *  - every attribute of the op's schema is written, in schema order (no braces if none);
 *  - floats use the shortest form that strtod reads back to the same double (1e-05, 0.02,
 *    10000), with inf, -inf and nan spelled out;
 *  - strings are quoted with \" \\ \n \t and \xHH escapes; identifiers print bare.
 * The printer never fails: a malformed graph (for a verifier report) still prints, with
 * "%?" for an operand outside the graph and "void" for an unset type.
 */
#include "ir/ir.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* True if s can be written bare: [A-Za-z_][A-Za-z0-9_.]* (the lexer's identifier). */
static bool is_ident(const char *s)
{
    if (!s || !((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_'))
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '.'))
            return false;
    return true;
}

static void print_string(const char *s, FILE *out)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", out);
        else if (*p == '\t')
            fputs("\\t", out);
        else if (*p < 32 || *p == 127)
            fprintf(out, "\\x%02x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

/* Shortest text that strtod reads back to exactly v: the least %.Ng precision that round-trips,
 * written positionally when v is an integer below 1e16 ("10000", not "1e+04"). */
static void format_float(double v, char *buf, size_t cap)
{
    if (isnan(v)) {
        snprintf(buf, cap, "nan");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, cap, v < 0 ? "-inf" : "inf");
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, v);
        double back = strtod(buf, NULL);
        if (memcmp(&back, &v, sizeof v) == 0)
            break;
    }
    if (strstr(buf, "e+") && v == floor(v) && fabs(v) < 1e16)
        snprintf(buf, cap, "%.0f", v);
}

static void print_attr(const ir_attr *a, FILE *out)
{
    char buf[64];
    switch (a->kind) {
    case AK_INT: fprintf(out, "%" PRId64, a->i); break;
    case AK_FLOAT:
        format_float(a->f, buf, sizeof buf);
        fputs(buf, out);
        break;
    case AK_STR:
        if (is_ident(a->s))
            fputs(a->s, out);
        else
            print_string(a->s, out);
        break;
    case AK_DTYPE: fputs(ir_dtype_name(a->d), out); break;
    case AK_INTS:
        fputc('[', out);
        for (int i = 0; i < a->n; i++)
            fprintf(out, "%s%" PRId64, i ? ", " : "", a->ints[i]);
        fputc(']', out);
        break;
    }
}

/* Value number of operand x of a node, or -1 if x is not a node of g (malformed graph). */
static int operand_number(const ir_graph *g, const int *num, const ir_node *x)
{
    if (!x || x->id < 0 || x->id >= g->n_nodes || g->nodes[x->id] != x)
        return -1;
    return num[x->id];
}

static void print_value(int v, FILE *out)
{
    if (v < 0)
        fputs("%?", out);
    else
        fprintf(out, "%%%d", v);
}

static void print_node(const ir_graph *g, const int *num, const ir_node *n, FILE *out)
{
    const ir_op_info *info = &ir_ops[n->op];
    if (n->op == OP_output) {
        fputs("  output ", out);
        print_string(n->name, out);
        fputc(' ', out);
        print_value(n->n_in ? operand_number(g, num, n->in[0]) : -1, out);
        fputc('\n', out);
        return;
    }
    fprintf(out, "  %%%d = %s", num[n->id], info->mnemonic);
    if (n->name) {
        fputc(' ', out);
        print_string(n->name, out);
    }
    if (n->optional)
        fputs(" optional", out);
    for (int i = 0; i < n->n_in; i++) {
        fputs(i ? ", " : " ", out);
        print_value(operand_number(g, num, n->in[i]), out);
    }
    int na = ir_op_nattrs(n->op);
    for (int k = 0; k < na; k++) {
        char name[64];
        fprintf(out, "%s%s = ", k ? ", " : " {", ir_op_attr_name(n->op, k, name, sizeof name));
        print_attr(&n->attr[k], out);
    }
    if (na)
        fputc('}', out);
    char type[320];
    fprintf(out, " : %s", ir_type_str(n->dtype, &n->shape, type, sizeof type));
    if (n->shard.present) {
        fputs(" shard [", out);
        for (int i = 0; i < n->shape.rank; i++) {
            int a = n->shard.axis[i];
            const char *axis = a >= 0 && a < g->n_axes ? g->axis_name[a] : "_";
            fprintf(out, "%s%s", i ? ", " : "", axis);
        }
        fputc(']', out);
    }
    if (n->stage >= 0)
        fprintf(out, " stage %d", n->stage);
    if (n->group >= 0)
        fprintf(out, " group %d", n->group);
    if (n->recomputed)
        fputs(" recomputed", out);
    fputc('\n', out);
}

void ir_print(const ir_graph *g, FILE *out)
{
    fputs("graph ", out);
    if (is_ident(g->name))
        fputs(g->name, out);
    else
        print_string(g->name, out);
    fputs(" {\n", out);
    if (g->n_axes > 0) {
        fputs("  mesh ", out);
        for (int i = 0; i < g->n_axes; i++)
            fprintf(out, "%s%s", i ? ", " : "", g->axis_name[i]);
        fputc('\n', out);
    }
    int *num = malloc(sizeof *num * ((size_t)g->n_nodes + 1));
    if (!num)
        ir_unreachable("out of memory");
    int next = 0;
    for (int i = 0; i < g->n_nodes; i++)
        num[i] = g->nodes[i]->op == OP_output ? -1 : next++;
    for (int i = 0; i < g->n_nodes; i++)
        print_node(g, num, g->nodes[i], out);
    fputs("}\n", out);
    free(num);
}
