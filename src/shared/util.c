/* Pure helpers shared by daemon, client and tests: names, sizes, small string and fd utilities. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus-names.h"
#include "macro.h"
#include "util.h"

bool mapping_name_is_valid(const char *s) {
        size_t n;

        if (!s)
                return false;

        n = strlen(s);
        if (n == 0 || n > FUSELOOP_NAME_MAX || s[0] == '.')
                return false;

        for (size_t i = 0; i < n; i++) {
                char c = s[i];

                if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
                        continue;
                if (!strchr("._:@+-", c))
                        return false;
        }
        return true;
}

int safe_atou64(const char *s, uint64_t *ret) {
        uint64_t v = 0;

        if (!s || !*s)
                return -EINVAL;

        for (const char *p = s; *p; p++) {
                if (*p < '0' || *p > '9')
                        return -EINVAL;
                if (v > (UINT64_MAX - (uint64_t) (*p - '0')) / 10)
                        return -ERANGE;
                v = v * 10 + (uint64_t) (*p - '0');
        }
        *ret = v;
        return 0;
}

int parse_size(const char *s, uint64_t *ret_bytes) {
        static const struct {
                char suffix;
                unsigned shift;
        } units[] = {
                { 'K', 10 }, { 'M', 20 }, { 'G', 30 }, { 'T', 40 },
        };
        char digits[32];
        const char *p, *rest;
        unsigned shift = 0;
        uint64_t v;
        size_t n;
        int r;

        if (!s)
                return -EINVAL;

        /* Leading zeros do not count against the length limit of the digits. */
        while (s[0] == '0' && s[1] >= '0' && s[1] <= '9')
                s++;
        for (p = s; *p >= '0' && *p <= '9'; p++)
                ;
        n = (size_t) (p - s);
        if (n == 0 || n >= sizeof(digits))
                return n == 0 ? -EINVAL : -ERANGE;
        memcpy(digits, s, n);
        digits[n] = '\0';

        rest = p;
        if (*rest) {
                size_t i;

                for (i = 0; i < ELEMENTSOF(units); i++)
                        if (*rest == units[i].suffix || *rest == units[i].suffix + ('a' - 'A'))
                                break;
                if (i >= ELEMENTSOF(units))
                        return -EINVAL;
                shift = units[i].shift;
                rest++;
                if (strcmp(rest, "") != 0 && strcmp(rest, "iB") != 0 && strcmp(rest, "B") != 0)
                        return -EINVAL;
        }

        r = safe_atou64(digits, &v);
        if (r < 0)
                return r;
        if (shift > 0 && v > (UINT64_MAX >> shift))
                return -ERANGE;

        *ret_bytes = v << shift;
        return 0;
}

char *format_size(char *buf, size_t len, uint64_t bytes) {
        static const char suffixes[] = "KMGTPE";
        unsigned i;

        if (bytes < 1024) {
                (void) snprintf(buf, len, "%" PRIu64, bytes);
                return buf;
        }

        for (i = 0; i < sizeof(suffixes) - 2 && bytes >= (UINT64_C(1024) << (10 * (i + 1))); i++)
                ;

        uint64_t unit = UINT64_C(1) << (10 * (i + 1));
        if (bytes % unit == 0)
                (void) snprintf(buf, len, "%" PRIu64 "%c", bytes / unit, suffixes[i]);
        else
                (void) snprintf(buf, len, "%.1f%c", (double) bytes / (double) unit, suffixes[i]);
        return buf;
}

int unhexchar(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* Whether the path component at p (up to the next '/' or the end) is component. */
static bool path_component_is(const char *p, const char *component) {
        size_t n = strlen(component);

        return strncmp(p, component, n) == 0 && (p[n] == '/' || p[n] == '\0');
}

int uri_to_path(const char *uri, char **ret) {
        _cleanup_(freep) char *path = NULL;
        const char *p = startswith(uri, "file://");
        bool decode = p;
        char *o;

        if (!p) {
                if (strstr(uri, "://"))
                        return -EPROTONOSUPPORT;
                p = uri;
        }
        if (p[0] != '/' || strlen(p) >= PATH_MAX)
                return -EINVAL;

        path = malloc(strlen(p) + 1);
        if (!path)
                return -ENOMEM;

        for (o = path; *p; p++) {
                int hi, lo;

                if (!decode || *p != '%') {
                        *o++ = *p;
                        continue;
                }
                hi = unhexchar(p[1]);
                lo = hi < 0 ? -1 : unhexchar(p[2]);
                if (lo < 0 || (hi | lo) == 0)
                        return -EINVAL;
                *o++ = (char) (hi << 4 | lo);
                p += 2;
        }
        *o = '\0';

        /* polkit rules may judge the path: it must name the file plainly, without empty, "." or
         * ".." components (symbolic links are refused when the source is opened). */
        for (const char *c = path; c; c = strchr(c + 1, '/'))
                if (path_component_is(c + 1, "") || path_component_is(c + 1, ".") ||
                    path_component_is(c + 1, ".."))
                        return -EINVAL;
        /* Rules and clients see it as a D-Bus string. */
        if (!utf8_is_valid(path))
                return -EINVAL;

        *ret = TAKE_PTR(path);
        return 0;
}

int loop_device_parse_number(const char *s) {
        const char *p;
        uint64_t n;

        if (!s)
                return -EINVAL;

        p = startswith(s, "/dev/loop");
        if (!p)
                p = startswith(s, "loop");
        if (!p || (p[0] == '0' && p[1] != '\0'))
                return -EINVAL;
        if (safe_atou64(p, &n) < 0 || n > (1u << 20))
                return -EINVAL;
        return (int) n;
}

int read_one_line_file(const char *path, char **ret) {
        _cleanup_(closep) int fd = -EBADF;
        char buf[4096];
        ssize_t n;
        char *s;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;

        n = read(fd, buf, sizeof(buf) - 1);
        if (n < 0)
                return -errno;
        buf[n] = '\0';
        buf[strcspn(buf, "\n")] = '\0';

        s = strdup(buf);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

int read_u64_file(const char *path, uint64_t *ret) {
        _cleanup_(freep) char *s = NULL;
        int r;

        r = read_one_line_file(path, &s);
        if (r < 0)
                return r;
        return safe_atou64(s, ret);
}

int block_stat_parse(const char *text, BlockStat *ret) {
        uint64_t v[11];
        const char *p = text;

        for (size_t i = 0; i < ELEMENTSOF(v); i++) {
                char *end;

                p += strspn(p, " \t");
                if (*p < '0' || *p > '9')
                        return -EINVAL;
                errno = 0;
                v[i] = strtoull(p, &end, 10);
                if (errno != 0)
                        return -EINVAL;
                p = end;
                if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\0')
                        return -EINVAL;
        }

        *ret = (BlockStat) {
                .read_ios = v[0], .read_merges = v[1], .read_sectors = v[2], .read_ticks_ms = v[3],
                .write_ios = v[4], .write_merges = v[5], .write_sectors = v[6], .write_ticks_ms = v[7],
                .in_flight = v[8], .io_ticks_ms = v[9], .time_in_queue_ms = v[10],
        };
        return 0;
}

int block_stat_read_loop(int nr, BlockStat *ret) {
        _cleanup_(freep) char *text = NULL;
        char path[64];
        int r;

        if (nr < 0)
                return -ENOENT;
        (void) snprintf(path, sizeof(path), "/sys/class/block/loop%i/stat", nr);

        r = read_one_line_file(path, &text);
        if (r < 0)
                return r;
        return block_stat_parse(text, ret);
}

const char *startswith(const char *s, const char *prefix) {
        size_t n = strlen(prefix);

        return strncmp(s, prefix, n) == 0 ? s + n : NULL;
}

char *vasprintf_or_null(const char *fmt, va_list ap) {
        char *s;

        return vasprintf(&s, fmt, ap) < 0 ? NULL : s;
}

/* Length of the valid UTF-8 sequence at s, or 0 if there is none. */
static size_t utf8_char_len(const unsigned char *s) {
        unsigned char c = s[0];
        size_t n;
        uint32_t cp;

        if (c < 0x80)
                return 1;
        if (c >= 0xc2 && c <= 0xdf) {
                n = 2;
                cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
                n = 3;
                cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
                n = 4;
                cp = c & 0x07;
        } else
                return 0;

        for (size_t i = 1; i < n; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;  /* also stops at the terminating NUL */
                cp = (cp << 6) | (s[i] & 0x3f);
        }

        if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        return n;
}

bool utf8_is_valid(const char *s) {
        const unsigned char *p = (const unsigned char *) s;

        while (*p) {
                size_t n = utf8_char_len(p);

                if (n == 0)
                        return false;
                p += n;
        }
        return true;
}

char *utf8_sanitize(char *s) {
        unsigned char *p = (unsigned char *) s;

        while (*p) {
                size_t n = utf8_char_len(p);

                if (n == 0) {
                        *p++ = '?';
                        continue;
                }
                p += n;
        }
        return s;
}

size_t utf8_prefix_len(const char *s, size_t max) {
        const unsigned char *p = (const unsigned char *) s;
        size_t len = 0;

        while (p[len]) {
                size_t n = utf8_char_len(p + len);

                if (n == 0)
                        n = 1;  /* not UTF-8: count bytes */
                if (len + n > max)
                        break;
                len += n;
        }
        return len;
}
