/* loom.h — the public C API of libloom (placeholder while the engine moves). */
#ifndef LOOM_H
#define LOOM_H
#endif
