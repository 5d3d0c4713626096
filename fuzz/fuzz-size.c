/* Fuzz target for parse_size() (fuseloopctl's --offset and --size) and format_size(): the input,
 * up to its first NUL byte, is a size argument. parse_size() must agree with the documented
 * grammar (decimal digits, an optional K/M/G/T suffix in either case, then optionally "iB" or "B")
 * and never accept a value that does not fit in 64 bits. The first bytes of the input also make a
 * number that must survive format_size() and, where the text is exact, parse_size() again. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "util.h"

#define UNTOUCHED UINT64_C(0x5a5a5a5a5a5a5a5a)

/* The grammar, as a specification. Returns 0 and the value, -EINVAL if s does not match the
 * grammar, -ERANGE if it matches but the value does not fit. *ret_overflow says whether the
 * digits alone exceed UINT64_MAX (whether or not the rest matches). */
static int expected_size(const char *s, uint64_t *ret, bool *ret_overflow) {
        static const char units[] = "KMGT";
        uint64_t v = 0;
        bool overflow = false;
        unsigned shift = 0;
        const char *p = s, *suffix;

        for (; *p >= '0' && *p <= '9'; p++) {
                unsigned d = (unsigned) (*p - '0');

                if (v > (UINT64_MAX - d) / 10)
                        overflow = true;
                else
                        v = v * 10 + d;
        }
        *ret_overflow = overflow;
        if (p == s)
                return -EINVAL;

        if (*p != '\0') {
                suffix = strchr(units, *p >= 'a' && *p <= 'z' ? *p - ('a' - 'A') : *p);
                if (!suffix)
                        return -EINVAL;
                shift = 10 * (unsigned) (suffix - units + 1);
                p++;
                if (strcmp(p, "") != 0 && strcmp(p, "iB") != 0 && strcmp(p, "B") != 0)
                        return -EINVAL;
        }
        if (overflow || (shift > 0 && v > UINT64_MAX >> shift))
                return -ERANGE;
        *ret = v << shift;
        return 0;
}

static void check_parse(const char *s) {
        uint64_t got = UNTOUCHED, want = 0;
        bool overflow;
        int r, e;

        r = parse_size(s, &got);
        e = expected_size(s, &want, &overflow);

        if (e == -EINVAL)
                /* Malformed; with too many digits it may be refused for those first. */
                FUZZ_CHECK(r == -EINVAL || (r == -ERANGE && overflow),
                           "parse_size(\"%.100s\") = %d, expected %d", s, r, e);
        else
                FUZZ_CHECK(r == e, "parse_size(\"%.100s\") = %d, expected %d", s, r, e);
        if (r < 0) {
                FUZZ_CHECK(got == UNTOUCHED, "parse_size(\"%.100s\") failed but wrote %" PRIu64, s, got);
                return;
        }
        FUZZ_CHECK(got == want, "parse_size(\"%.100s\") = %" PRIu64 ", expected %" PRIu64, s, got, want);
}

/* format_size() of v fits its buffer and says v: exactly ("4K") or to one decimal place of its
 * unit ("1.5M"). An exact text with a suffix that parse_size() knows parses back to v. */
static void check_format(uint64_t v) {
        static const char units[] = "KMGTPE";
        char buf[FORMAT_SIZE_MAX];
        const char *u;
        uint64_t back = UNTOUCHED;
        size_t n;
        unsigned shift = 0;
        int r;

        memset(buf, 'X', sizeof(buf));
        FUZZ_CHECK(format_size(buf, sizeof(buf), v) == buf, "%s", "format_size() did not return buf");
        FUZZ_CHECK(memchr(buf, '\0', sizeof(buf)), "format_size(%" PRIu64 ") is not terminated", v);
        n = strlen(buf);
        FUZZ_CHECK(n > 0 && n < sizeof(buf) - 1, "format_size(%" PRIu64 ") = \"%s\" may be cut short", v, buf);

        u = strchr(units, buf[n - 1]);
        if (u && *u)
                shift = 10 * (unsigned) (u - units + 1);
        else
                FUZZ_CHECK(v < 1024 && buf[n - 1] >= '0' && buf[n - 1] <= '9',
                           "format_size(%" PRIu64 ") = \"%s\" has no unit", v, buf);

        if (strchr(buf, '.')) {
                /* Rounded to a tenth of the unit. */
                long double x = strtold(buf, NULL) * (long double) (UINT64_C(1) << shift);

                FUZZ_CHECK(shift > 0 && fabsl(x - (long double) v) <=
                           0.05L * (long double) (UINT64_C(1) << shift) * 1.0001L,
                           "format_size(%" PRIu64 ") = \"%s\"", v, buf);
                return;
        }

        r = parse_size(buf, &back);
        if (shift > 40)
                /* P and E are beyond what parse_size() takes. */
                FUZZ_CHECK(r == -EINVAL, "parse_size(\"%s\") = %d, expected -EINVAL", buf, r);
        else
                FUZZ_CHECK(r == 0 && back == v, "format_size(%" PRIu64 ") = \"%s\", which parses as %d, %" PRIu64,
                           v, buf, r, back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        FuzzInput in = { data, size };
        uint64_t v;
        char *s;

        s = fuzz_strndup(data, size);
        if (!s)
                return 0;
        check_parse(s);
        free(s);

        /* A number from the same bytes, and the same rounded to each unit so that exact texts
         * ("3G") are common. */
        v = fuzz_u64(&in) >> (fuzz_u8(&in) % 64);
        check_format(v);
        for (unsigned shift = 10; shift <= 60; shift += 10)
                check_format(v & ~((UINT64_C(1) << shift) - 1));
        return 0;
}
