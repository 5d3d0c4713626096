/* The restart record: what a new daemon needs, besides the fds, to resume serving a mapping.
 *
 * Text: a first line naming the format and its version, one "key=value" per line, a last line
 * "end" (so that a record cut short is never taken for one without its optional lines). Values
 * are escaped (every byte outside printable ASCII, and '\', as \xHH), so a line is always one
 * line and a file name with odd bytes survives. Map options use their D-Bus names and go through
 * the same validation as a Map call's (map_options_set()), so a record cannot carry a value a
 * call could not. */
#include <errno.h>
#include <inttypes.h>
#include <linux/fuse.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus-names.h"
#include "macro.h"
#include "restart-record.h"
#include "util.h"

#define RECORD_MAGIC "fuseloop-restart-record"
#define RECORD_END "end"

/* ------------------------------------------------------------------------------------------ */
/* Writing */

typedef struct Writer {
        char *buf;
        size_t len, allocated;
        bool oom;
} Writer;

static void writer_append(Writer *w, const char *s, size_t n) {
        if (w->oom)
                return;
        if (w->len + n + 1 > w->allocated) {
                size_t a = MAX(w->allocated * 2, w->len + n + 1);
                char *b = realloc(w->buf, MAX(a, (size_t) 256));

                if (!b) {
                        w->oom = true;
                        return;
                }
                w->buf = b;
                w->allocated = MAX(a, (size_t) 256);
        }
        memcpy(w->buf + w->len, s, n);
        w->len += n;
        w->buf[w->len] = '\0';
}

static void writer_printf(Writer *w, const char *fmt, ...) _printf_(2, 3);

static void writer_printf(Writer *w, const char *fmt, ...) {
        _cleanup_(freep) char *s = NULL;
        va_list ap;

        va_start(ap, fmt);
        s = vasprintf_or_null(fmt, ap);
        va_end(ap);
        if (!s) {
                w->oom = true;
                return;
        }
        writer_append(w, s, strlen(s));
}

static void writer_escaped(Writer *w, const char *key, const uint8_t *value, size_t n) {
        writer_printf(w, "%s=", key);
        for (size_t i = 0; i < n; i++) {
                uint8_t c = value[i];

                if (c > ' ' && c < 0x7f && c != '\\')
                        writer_append(w, (const char *) &c, 1);
                else
                        writer_printf(w, "\\x%02x", c);
        }
        writer_append(w, "\n", 1);
}

static void writer_string(Writer *w, const char *key, const char *value) {
        if (value)
                writer_escaped(w, key, (const uint8_t *) value, strlen(value));
}

static void writer_hex(Writer *w, const char *key, const uint8_t *value, size_t n) {
        writer_printf(w, "%s=", key);
        for (size_t i = 0; i < n; i++)
                writer_printf(w, "%02x", value[i]);
        writer_append(w, "\n", 1);
}

int restart_record_format(const RestartRecord *r, char **ret_text, size_t *ret_len) {
        Writer w = {};

        writer_printf(&w, RECORD_MAGIC " %u\n", RESTART_RECORD_VERSION);
        writer_string(&w, "name", r->name);
        writer_printf(&w, "owner=%u\n", (unsigned) r->owner_uid);
        writer_printf(&w, "created=%" PRIu64 "\n", r->created_usec);
        writer_string(&w, "uri-path", r->uri_path);
        writer_string(&w, "source", r->source_description);
        writer_printf(&w, "loop=%i\n", r->loop_nr);
        writer_printf(&w, "diskseq=%" PRIu64 "\n", r->loop_diskseq);
        writer_printf(&w, "read-ios-base=%" PRIu64 "\n", r->loop_read_ios_base);
        writer_printf(&w, "read-sectors-base=%" PRIu64 "\n", r->loop_read_sectors_base);
        writer_printf(&w, "dio=%i\n", r->direct_io_effective);
        writer_printf(&w, "source-async=%i\n", r->source_read_async);
        writer_string(&w, "caller", r->caller);
        writer_hex(&w, "fuse-init", r->fuse_init, r->fuse_init_size);
        writer_printf(&w, "fuse-offset=%" PRIu64 "\n", r->fuse_offset);
        writer_printf(&w, "fuse-size=%" PRIu64 "\n", r->fuse_size);
        writer_printf(&w, "passthrough-id=%i\n", r->passthrough_id);

        /* Options, by their D-Bus names. */
        writer_printf(&w, FUSELOOP_OPT_OFFSET "=%" PRIu64 "\n", r->options.offset);
        writer_printf(&w, FUSELOOP_OPT_SIZE "=%" PRIu64 "\n", r->options.size);
        writer_printf(&w, FUSELOOP_OPT_SECTOR_SIZE "=%" PRIu32 "\n", r->options.sector_size);
        writer_printf(&w, FUSELOOP_OPT_PARTITION_SCAN "=%i\n", r->options.partition_scan);
        writer_printf(&w, FUSELOOP_OPT_DIRECT_IO "=%i\n", r->options.direct_io);
        writer_printf(&w, FUSELOOP_OPT_BIND_TO_CALLER "=%i\n", r->options.bind_to_caller);
        writer_printf(&w, FUSELOOP_OPT_TIMEOUT "=%" PRIu32 "\n", r->options.timeout_sec);
        writer_printf(&w, FUSELOOP_OPT_UNTRUSTED "=%i\n", r->options.untrusted);
        writer_printf(&w, FUSELOOP_OPT_PASSTHROUGH "=%i\n", r->options.passthrough);
        writer_string(&w, FUSELOOP_OPT_MOUNT_POINT, r->options.mount_point);
        writer_string(&w, FUSELOOP_OPT_PROTOCOL, r->options.protocol);
        writer_string(&w, FUSELOOP_OPT_EXPORT_NAME, r->options.export_name);
        /* Optional lines can go missing without a trace; the end marker cannot. */
        writer_printf(&w, RECORD_END "\n");

        if (w.oom) {
                free(w.buf);
                return -ENOMEM;
        }
        *ret_text = w.buf;
        *ret_len = w.len;
        return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Reading */

static int fail(char *errbuf, size_t errlen, const char *fmt, ...) _printf_(3, 4);

static int fail(char *errbuf, size_t errlen, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf(errbuf, errlen, fmt, ap);
        va_end(ap);
        return -EINVAL;
}

/* Undoes writer_escaped(): a string without NUL bytes. */
static int unescape(const char *s, size_t n, char **ret) {
        char *o, *p;

        o = p = malloc(n + 1);
        if (!o)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                if (s[i] != '\\') {
                        *p++ = s[i];
                        continue;
                }
                if (i + 3 >= n || s[i + 1] != 'x' || unhexchar(s[i + 2]) < 0 || unhexchar(s[i + 3]) < 0) {
                        free(o);
                        return -EINVAL;
                }
                *p = (char) (unhexchar(s[i + 2]) << 4 | unhexchar(s[i + 3]));
                if (*p == '\0') {
                        free(o);
                        return -EINVAL;
                }
                p++;
                i += 3;
        }
        *p = '\0';
        *ret = o;
        return 0;
}

static int parse_hex(const char *s, size_t n, uint8_t **ret, size_t *ret_size) {
        uint8_t *b;

        if (n == 0 || n % 2 != 0 || n / 2 > RESTART_RECORD_INIT_MAX)
                return -EINVAL;
        b = malloc(n / 2);
        if (!b)
                return -ENOMEM;
        for (size_t i = 0; i < n; i += 2) {
                int hi = unhexchar(s[i]), lo = unhexchar(s[i + 1]);

                if (hi < 0 || lo < 0) {
                        free(b);
                        return -EINVAL;
                }
                b[i / 2] = (uint8_t) (hi << 4 | lo);
        }
        *ret = b;
        *ret_size = n / 2;
        return 0;
}

/* A unique bus name as the bus daemon hands them out: ":" then digits and dots. */
static bool unique_name_is_valid(const char *s) {
        size_t n = strlen(s);

        if (n < 2 || n > 255 || s[0] != ':')
                return false;
        for (size_t i = 1; i < n; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || s[i] == '.'))
                        return false;
        return true;
}

/* The kernel's FUSE_INIT request: a header whose length is the whole, the INIT opcode, and the
 * protocol major version this daemon speaks. */
static bool fuse_init_is_valid(const uint8_t *b, size_t n) {
        struct fuse_in_header h;
        struct fuse_init_in in;

        if (n < sizeof(h) + offsetof(struct fuse_init_in, flags) + sizeof(in.flags))
                return false;
        memcpy(&h, b, sizeof(h));
        memcpy(&in, b + sizeof(h), MIN(sizeof(in), n - sizeof(h)));
        return h.len == n && h.opcode == FUSE_INIT && in.major == FUSE_KERNEL_VERSION;
}

static const char *const record_keys[] = {
        "name", "owner", "created", "uri-path", "source", "loop", "diskseq", "read-ios-base", "read-sectors-base",
        "dio", "source-async", "caller", "fuse-init", "fuse-offset", "fuse-size", "passthrough-id",
};

static int parse_u64(const char *key, const char *v, uint64_t max, uint64_t *ret, char *errbuf, size_t errlen) {
        if (safe_atou64(v, ret) < 0 || *ret > max)
                return fail(errbuf, errlen, "'%s' is not a number up to %" PRIu64, key, max);
        return 0;
}

static int parse_bool(const char *key, const char *v, bool *ret, char *errbuf, size_t errlen) {
        if (streq(v, "0") || streq(v, "1")) {
                *ret = v[0] == '1';
                return 0;
        }
        return fail(errbuf, errlen, "'%s' must be 0 or 1", key);
}

/* One option line, through the same checks as a bus call's option. */
static int parse_option(RestartRecord *r, const char *key, char type, const char *v, char *errbuf, size_t errlen) {
        char t[2] = { type, '\0' }, err[256];
        OptionValue value = {};
        uint64_t u = 0;
        bool b = false;
        int k;

        switch (type) {
        case 't':
                k = parse_u64(key, v, UINT64_MAX, &u, errbuf, errlen);
                value.t = u;
                break;
        case 'u':
                k = parse_u64(key, v, UINT32_MAX, &u, errbuf, errlen);
                value.u = (uint32_t) u;
                break;
        case 'b':
                k = parse_bool(key, v, &b, errbuf, errlen);
                value.b = b;
                break;
        case 's':
                value.s = v;
                k = 0;
                break;
        default:
                return fail(errbuf, errlen, "option '%s' has a type records cannot carry", key);
        }
        if (k < 0)
                return k;

        k = map_options_set(&r->options, key, t, &value, err, sizeof(err));
        if (k == -EINVAL)
                return fail(errbuf, errlen, "%s", err);
        return k;
}

static int parse_line(RestartRecord *r, const char *key, const char *raw, size_t rawlen, char *errbuf, size_t errlen) {
        _cleanup_(freep) char *v = NULL;
        uint64_t u;
        char type;
        int k;

        if (streq(key, "fuse-init")) {
                k = parse_hex(raw, rawlen, &r->fuse_init, &r->fuse_init_size);
                if (k == -EINVAL || (k >= 0 && !fuse_init_is_valid(r->fuse_init, r->fuse_init_size)))
                        return fail(errbuf, errlen, "'fuse-init' is not a FUSE_INIT request");
                return k;
        }

        k = unescape(raw, rawlen, &v);
        if (k == -EINVAL)
                return fail(errbuf, errlen, "'%s' has a bad escape sequence or a NUL byte", key);
        if (k < 0)
                return k;

        if (streq(key, "name")) {
                if (!mapping_name_is_valid(v))
                        return fail(errbuf, errlen, "'name' is not a valid mapping name");
                r->name = TAKE_PTR(v);
        } else if (streq(key, "owner")) {
                k = parse_u64(key, v, UINT32_MAX - 1, &u, errbuf, errlen);
                r->owner_uid = (uid_t) u;
        } else if (streq(key, "created"))
                k = parse_u64(key, v, UINT64_MAX, &r->created_usec, errbuf, errlen);
        else if (streq(key, "uri-path")) {
                if (v[0] != '/' || !utf8_is_valid(v))
                        return fail(errbuf, errlen, "'uri-path' is not an absolute UTF-8 path");
                r->uri_path = TAKE_PTR(v);
        } else if (streq(key, "source")) {
                if (!utf8_is_valid(v))
                        return fail(errbuf, errlen, "'source' is not UTF-8");
                r->source_description = TAKE_PTR(v);
        } else if (streq(key, "loop")) {
                k = parse_u64(key, v, INT32_MAX, &u, errbuf, errlen);
                r->loop_nr = (int) u;
        } else if (streq(key, "diskseq")) {
                k = parse_u64(key, v, UINT64_MAX, &r->loop_diskseq, errbuf, errlen);
                if (k >= 0 && r->loop_diskseq == 0)
                        k = fail(errbuf, errlen, "'diskseq' must not be 0");
        } else if (streq(key, "read-ios-base"))
                k = parse_u64(key, v, UINT64_MAX, &r->loop_read_ios_base, errbuf, errlen);
        else if (streq(key, "read-sectors-base"))
                k = parse_u64(key, v, UINT64_MAX, &r->loop_read_sectors_base, errbuf, errlen);
        else if (streq(key, "fuse-offset"))
                k = parse_u64(key, v, UINT64_MAX, &r->fuse_offset, errbuf, errlen);
        else if (streq(key, "fuse-size"))
                k = parse_u64(key, v, UINT64_MAX, &r->fuse_size, errbuf, errlen);
        else if (streq(key, "passthrough-id")) {
                uint64_t u;

                k = parse_u64(key, v, INT32_MAX, &u, errbuf, errlen);
                if (k >= 0)
                        r->passthrough_id = (int) u;
        } else if (streq(key, "dio"))
                k = parse_bool(key, v, &r->direct_io_effective, errbuf, errlen);
        else if (streq(key, "source-async"))
                k = parse_bool(key, v, &r->source_read_async, errbuf, errlen);
        else if (streq(key, "caller")) {
                if (!unique_name_is_valid(v))
                        return fail(errbuf, errlen, "'caller' is not a unique bus name");
                r->caller = TAKE_PTR(v);
        } else if ((type = map_option_type(key)) != 0)
                k = parse_option(r, key, type, v, errbuf, errlen);
        else
                k = fail(errbuf, errlen, "unknown key '%.64s'", key);
        return k;
}

/* More lines than known keys and options cannot be a record of ours. */
#define RECORD_LINES_MAX 64

static bool key_seen(char seen[][64], size_t n_seen, const char *key) {
        for (size_t i = 0; i < n_seen; i++)
                if (streq(seen[i], key))
                        return true;
        return false;
}

int restart_record_parse(const char *text, size_t len, RestartRecord *ret, char *errbuf, size_t errlen) {
        RestartRecord r = RESTART_RECORD_INIT;
        char seen[RECORD_LINES_MAX][64], first[64];
        size_t pos, n_seen = 0;
        bool ended = false;
        int k = 0;

        *ret = RESTART_RECORD_INIT;

        if (len > RESTART_RECORD_MAX)
                return fail(errbuf, errlen, "the record is larger than %u bytes", RESTART_RECORD_MAX);

        /* The first line: magic and version. */
        (void) snprintf(first, sizeof(first), RECORD_MAGIC " %u\n", RESTART_RECORD_VERSION);
        if (len < strlen(first) || memcmp(text, first, strlen(first)) != 0)
                return fail(errbuf, errlen, "not a restart record of version %u", RESTART_RECORD_VERSION);
        pos = strlen(first);

        while (pos < len) {
                const char *line = text + pos, *nl, *eq;
                size_t linelen, keylen;
                char *key;

                nl = memchr(line, '\n', len - pos);
                if (!nl) {
                        k = fail(errbuf, errlen, "the record is cut short (no newline at its end)");
                        goto fail;
                }
                linelen = (size_t) (nl - line);
                pos += linelen + 1;

                if (linelen == strlen(RECORD_END) && memcmp(line, RECORD_END, linelen) == 0) {
                        if (pos != len) {
                                k = fail(errbuf, errlen, "the record goes on after its end");
                                goto fail;
                        }
                        ended = true;
                        break;
                }

                if (n_seen >= RECORD_LINES_MAX) {
                        k = fail(errbuf, errlen, "the record has more than %u lines", RECORD_LINES_MAX);
                        goto fail;
                }
                eq = memchr(line, '=', linelen);
                keylen = eq ? (size_t) (eq - line) : 0;
                if (!eq || keylen == 0 || keylen >= sizeof(seen[0]) || memchr(line, '\0', linelen)) {
                        k = fail(errbuf, errlen, "malformed line in the record");
                        goto fail;
                }
                key = seen[n_seen];
                memcpy(key, line, keylen);
                key[keylen] = '\0';
                if (key_seen(seen, n_seen, key)) {
                        k = fail(errbuf, errlen, "key '%s' appears twice", key);
                        goto fail;
                }
                n_seen++;

                k = parse_line(&r, key, eq + 1, linelen - keylen - 1, errbuf, errlen);
                if (k < 0)
                        goto fail;
        }

        if (!ended) {
                k = fail(errbuf, errlen, "the record is cut short (no end line)");
                goto fail;
        }

        /* Required: every key but the optional ones, and the mapping's extent. */
        for (size_t i = 0; i < ELEMENTSOF(record_keys); i++) {
                /* The bases and the FUSE file's extent came later: a record of an earlier version
                 * has none (they are 0). */
                if (streq(record_keys[i], "uri-path") || streq(record_keys[i], "caller") ||
                    streq(record_keys[i], "read-ios-base") || streq(record_keys[i], "read-sectors-base") ||
                    streq(record_keys[i], "fuse-offset") || streq(record_keys[i], "fuse-size") ||
                    streq(record_keys[i], "passthrough-id"))
                        continue;
                if (!key_seen(seen, n_seen, record_keys[i])) {
                        k = fail(errbuf, errlen, "the record lacks '%s'", record_keys[i]);
                        goto fail;
                }
        }
        if (!key_seen(seen, n_seen, FUSELOOP_OPT_OFFSET) || !key_seen(seen, n_seen, FUSELOOP_OPT_SIZE)) {
                k = fail(errbuf, errlen, "the record lacks the mapping's offset or size");
                goto fail;
        }
        if (r.options.offset % 512 != 0 || r.options.size < r.options.sector_size ||
            r.options.offset > UINT64_MAX - r.options.size) {
                k = fail(errbuf, errlen, "the record's offset and size do not describe a mapping");
                goto fail;
        }
        if (r.fuse_size == 0) {
                r.fuse_offset = r.options.offset;
                r.fuse_size = r.options.size;
        }
        if (r.fuse_offset > UINT64_MAX - r.fuse_size || r.fuse_offset > r.options.offset ||
            r.options.offset + r.options.size > r.fuse_offset + r.fuse_size) {
                k = fail(errbuf, errlen, "the record's FUSE file does not hold the mapping");
                goto fail;
        }
        if (r.options.bind_to_caller != !!r.caller) {
                k = fail(errbuf, errlen, "'caller' must be there exactly for bind-to-caller mappings");
                goto fail;
        }

        *ret = r;
        return 0;

fail:
        restart_record_done(&r);
        return k;
}

void restart_record_done(RestartRecord *r) {
        r->name = mfree(r->name);
        r->uri_path = mfree(r->uri_path);
        r->source_description = mfree(r->source_description);
        r->caller = mfree(r->caller);
        r->fuse_init = mfree(r->fuse_init);
        r->fuse_init_size = 0;
        map_options_done(&r->options);
}
