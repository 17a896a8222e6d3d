/* pass.c — pass manager (STUB). */
int pass_placeholder(void);
int pass_placeholder(void) { return 0; }
