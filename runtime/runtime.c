/* runtime.c — placeholder until the runtime lands. */
int rt_placeholder(void);
int rt_placeholder(void) { return 0; }
