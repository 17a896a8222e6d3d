/* cli.h — the `loom` command: main.c picks the subcommand; the ones with code of their own live
 * in cmd_NAME.c, the rest are engine jobs (engine/jobs.h) that main.c calls directly. */
#ifndef LOOM_CLI_H
#define LOOM_CLI_H

#include <stdio.h>

#include "engine/options.h"
#include "ir/diag.h"

/* Prints d's messages to stderr, frees d and returns the exit status: 0 if no errors, else 1. */
int cli_finish(ir_diag *d);

int cmd_check(const eng_opts *o);
int cmd_dump(const eng_opts *o);
int cmd_opt(const eng_opts *o);
int cmd_init(const eng_opts *o);
int cmd_run(const eng_opts *o);
int cmd_devices(const eng_opts *o);
int cmd_tokenize(const eng_opts *o);
int cmd_embed(const eng_opts *o);

/* help.c: `loom CMD --help` (false: no such command) and `loom --version`. */
bool cli_help(const char *cmd, FILE *out);
void cli_version(FILE *out);

#endif
