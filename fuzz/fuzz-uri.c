/* Fuzz target for uri_to_path(), the MapURI source parser: the input, up to its first NUL byte,
 * is the uri argument of a MapURI call. The result is compared with a specification written
 * independently here (scheme check, percent-decoding, then the component and UTF-8 rules), and
 * every accepted path is checked for what polkit rules and open() rely on: absolute, no empty,
 * "." or ".." component, valid UTF-8, shorter than PATH_MAX. */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "util.h"

static int hex_digit(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* Whether every component of the absolute path s (split at each '/') is non-empty and neither
 * "." nor "..". */
static bool components_ok(const char *s) {
        const char *c = s + 1;

        for (;;) {
                size_t n = strcspn(c, "/");

                if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
                        return false;
                if (c[n] == '\0')
                        return true;
                c += n + 1;
        }
}

/* The specification: returns 0 and the expected path in *ret (malloc()ed), or the expected
 * error. */
static int expected_path(const char *uri, char **ret) {
        static const char scheme[] = "file://";
        bool decode = strncmp(uri, scheme, strlen(scheme)) == 0;
        const char *in = decode ? uri + strlen(scheme) : uri;
        size_t n = strlen(in), j = 0;
        char *out;

        if (!decode && strstr(uri, "://"))
                return -EPROTONOSUPPORT;
        if (in[0] != '/' || n >= PATH_MAX)
                return -EINVAL;

        out = malloc(n + 1);
        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                int hi, lo;

                if (!decode || in[i] != '%') {
                        out[j++] = in[i];
                        continue;
                }
                /* Two hex digits must follow; in[i + 1] is NUL at the end, so in[i + 2] is read
                 * only when in[i + 1] is a digit. */
                hi = hex_digit(in[i + 1]);
                lo = hi >= 0 ? hex_digit(in[i + 2]) : -1;
                if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                        free(out);
                        return -EINVAL;
                }
                out[j++] = (char) (hi * 16 + lo);
                i += 2;
        }
        out[j] = '\0';

        if (!components_ok(out) || !utf8_is_valid(out)) {
                free(out);
                return -EINVAL;
        }
        *ret = out;
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *uri, *path = NULL, *want = NULL;
        int r, e;

        uri = fuzz_strndup(data, size);
        if (!uri)
                return 0;

        r = uri_to_path(uri, &path);
        e = expected_path(uri, &want);
        if (r == -ENOMEM || e == -ENOMEM)
                goto finish;

        FUZZ_CHECK(r == 0 || r == -EINVAL || r == -EPROTONOSUPPORT, "uri_to_path(\"%.200s\") = %d", uri, r);
        FUZZ_CHECK(r == e, "uri_to_path(\"%.200s\") = %d, expected %d", uri, r, e);
        if (r < 0) {
                FUZZ_CHECK(!path, "uri_to_path(\"%.200s\") failed but wrote its out-parameter", uri);
                goto finish;
        }

        FUZZ_CHECK(path && want && strcmp(path, want) == 0,
                   "uri_to_path(\"%.200s\") gave \"%.200s\", expected \"%.200s\"", uri, path, want);
        FUZZ_CHECK(path[0] == '/', "\"%.200s\" is not absolute", path);
        FUZZ_CHECK(strlen(path) < PATH_MAX, "\"%.200s...\" is %zu bytes long", path, strlen(path));
        FUZZ_CHECK(components_ok(path), "\"%.200s\" has an empty, '.' or '..' component", path);
        FUZZ_CHECK(utf8_is_valid(path), "\"%.200s\" is not valid UTF-8", path);
        /* Decoding only ever shortens; a plain path is taken unchanged. */
        FUZZ_CHECK(strlen(path) <= strlen(uri), "\"%.200s\" is longer than its URI", path);
        if (strncmp(uri, "file://", 7) != 0)
                FUZZ_CHECK(strcmp(path, uri) == 0, "plain path \"%.200s\" changed to \"%.200s\"", uri, path);

finish:
        free(want);
        free(path);
        free(uri);
        return 0;
}
