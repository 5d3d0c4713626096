/* Assertions for the unit tests: each failed check prints file, line and both values; main()
 * returns test_summary(). */
#pragma once

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static unsigned n_failed, n_checked;

#define CHECK(cond, fmt, ...)                                                                   \
        do {                                                                                    \
                n_checked++;                                                                    \
                if (!(cond)) {                                                                  \
                        n_failed++;                                                             \
                        fprintf(stderr, "%s:%d: %s: check '%s' failed: " fmt "\n",              \
                                __FILE__, __LINE__, __func__, #cond __VA_OPT__(,) __VA_ARGS__); \
                }                                                                               \
        } while (0)

#define CHECK_INT_EQ(actual, expected)                                                          \
        do {                                                                                    \
                long long _a = (long long) (actual), _e = (long long) (expected);               \
                CHECK(_a == _e, "%s = %lld, expected %lld", #actual, _a, _e);                   \
        } while (0)

#define CHECK_STR_EQ(actual, expected)                                                          \
        do {                                                                                    \
                const char *_a = (actual), *_e = (expected);                                    \
                CHECK(_a && strcmp(_a, _e) == 0, "%s = \"%s\", expected \"%s\"", #actual,      \
                      _a ? _a : "(null)", _e);                                                  \
        } while (0)

static inline int test_summary(const char *name) {
        fprintf(stderr, "%s: %u checks, %u failed\n", name, n_checked, n_failed);
        return n_failed == 0 && n_checked > 0 ? 0 : 1;
}
