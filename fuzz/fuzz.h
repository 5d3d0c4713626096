/* What the fuzz targets share: the libFuzzer entry point, a check that aborts (so that libFuzzer
 * keeps the input), and readers that turn the fuzzer's bytes into structured values. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Runs one input; libFuzzer calls it, and so does standalone.c in builds without libFuzzer.
 * Returns 0; a broken property aborts. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A property of the code under test that must hold: prints file, line, the condition and the
 * values, then aborts, which libFuzzer reports as a crash together with the input. */
#define FUZZ_CHECK(cond, fmt, ...)                                                              \
        do {                                                                                    \
                if (!(cond)) {                                                                  \
                        fprintf(stderr, "%s:%d: %s: check '%s' failed: " fmt "\n",              \
                                __FILE__, __LINE__, __func__, #cond __VA_OPT__(,) __VA_ARGS__); \
                        abort();                                                                \
                }                                                                               \
        } while (0)

/* The rest of the input, consumed from the front. Reading past its end yields zeros. */
typedef struct FuzzInput {
        const uint8_t *data;
        size_t size;
} FuzzInput;

static inline bool fuzz_empty(const FuzzInput *in) {
        return in->size == 0;
}

static inline uint8_t fuzz_u8(FuzzInput *in) {
        uint8_t v;

        if (in->size == 0)
                return 0;
        v = in->data[0];
        in->data++;
        in->size--;
        return v;
}

/* n bytes (at most 8), little-endian. */
static inline uint64_t fuzz_bytes(FuzzInput *in, unsigned n) {
        uint64_t v = 0;

        for (unsigned i = 0; i < n; i++)
                v |= (uint64_t) fuzz_u8(in) << (8 * i);
        return v;
}

static inline uint32_t fuzz_u32(FuzzInput *in) {
        return (uint32_t) fuzz_bytes(in, 4);
}

static inline uint64_t fuzz_u64(FuzzInput *in) {
        return fuzz_bytes(in, 8);
}

/* A copy of data[0..size) with a NUL after it (data may hold NUL bytes itself); NULL when out of
 * memory. */
static inline char *fuzz_strndup(const uint8_t *data, size_t size) {
        char *s = malloc(size + 1);

        if (!s)
                return NULL;
        if (size > 0)
                memcpy(s, data, size);
        s[size] = '\0';
        return s;
}

/* A string of up to max bytes taken from the input: a length byte (two when max > 255), then
 * that many bytes (fewer if the input ends). It may hold NUL bytes; the C string ends at the
 * first. malloc()ed; NULL when out of memory. */
static inline char *fuzz_string(FuzzInput *in, size_t max) {
        size_t n = max > 255 ? (size_t) fuzz_bytes(in, 2) : fuzz_u8(in);
        char *s;

        if (max > 0)
                n %= max + 1;
        else
                n = 0;
        if (n > in->size)
                n = in->size;
        s = fuzz_strndup(in->data, n);
        in->data += n;
        in->size -= n;
        return s;
}
