/* Fuzz target for mapping_name_is_valid(): the input, up to its first NUL byte, is a name from
 * the bus. The answer must be exactly the documented rule: 1 to FUSELOOP_NAME_MAX bytes of
 * [A-Za-z0-9._:@+-], not starting with '.'. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bus-names.h"
#include "fuzz.h"
#include "util.h"

/* The documented rule, written as a specification: a character class test per byte. */
static bool name_char_allowed(unsigned char c) {
        static const char allowed[] =
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:@+-";

        return c != '\0' && memchr(allowed, c, sizeof(allowed) - 1) != NULL;
}

static bool name_expected_valid(const char *s) {
        size_t n = strlen(s);

        if (n < 1 || n > FUSELOOP_NAME_MAX || s[0] == '.')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!name_char_allowed((unsigned char) s[i]))
                        return false;
        return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *s;
        bool got, want;

        s = fuzz_strndup(data, size);
        if (!s)
                return 0;

        got = mapping_name_is_valid(s);
        want = name_expected_valid(s);
        FUZZ_CHECK(got == want, "mapping_name_is_valid(\"%.200s\") (%zu bytes) = %d, expected %d",
                   s, strlen(s), got, want);

        /* A valid name is what the daemon uses as a file name in its run directory and as a bus
         * string: it never holds '/', and it is never "." or "..". */
        if (got)
                FUZZ_CHECK(!strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0 &&
                           utf8_is_valid(s), "\"%s\" accepted", s);

        FUZZ_CHECK(!mapping_name_is_valid(NULL), "%s", "NULL accepted");
        free(s);
        return 0;
}
