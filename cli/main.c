/* main.c — the `loom` command (STUB). */
#include <stdio.h>
int main(void) { puts("loom"); return 0; }
