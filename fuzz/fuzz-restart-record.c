/* Fuzz target for the restart record (src/daemon/restart-record.h), which a restarted daemon reads
 * back from the service manager's fd store and must treat as untrusted.
 *
 * Two checks per input:
 * - the input as a record: restart_record_parse() of exactly these bytes (no NUL after them).
 *   A refusal leaves nothing to free and says why; an accepted record holds only what a bus call
 *   could have made (valid name, sane extent, a FUSE_INIT of bounded size, UTF-8 strings), and
 *   restart_record_format() of it parses again to the same fields and formats to the same text.
 * - the input as field values: a record the daemon could write (any name, odd bytes in every
 *   string, any option values a call accepts) is formatted and must parse back to the same
 *   fields. */
#include <errno.h>
#include <inttypes.h>
#include <linux/fuse.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bus-names.h"
#include "fuzz.h"
#include "restart-record.h"
#include "util.h"

#define EXPORT_NAME_MAX 4096  /* NBD's limit, which export-name follows */

static bool str_eq(const char *a, const char *b) {
        return a && b ? strcmp(a, b) == 0 : a == b;
}

static const char *str_or_null(const char *s) {
        return s ?: "(null)";
}

/* Every field of a and b is equal (size_set too, if with_size_set). */
static void check_same(const RestartRecord *a, const RestartRecord *b, bool with_size_set, const char *what) {
#define SAME_STR(f) FUZZ_CHECK(str_eq(a->f, b->f), "%s: " #f " '%.100s' != '%.100s'", what,       \
                               str_or_null(a->f), str_or_null(b->f))
#define SAME_NUM(f) FUZZ_CHECK(a->f == b->f, "%s: " #f " %" PRIu64 " != %" PRIu64, what,            \
                               (uint64_t) a->f, (uint64_t) b->f)
        SAME_STR(name);
        SAME_NUM(owner_uid);
        SAME_NUM(created_usec);
        SAME_STR(uri_path);
        SAME_STR(source_description);
        SAME_NUM(options.offset);
        SAME_NUM(options.size);
        if (with_size_set)
                SAME_NUM(options.size_set);
        SAME_NUM(options.sector_size);
        SAME_NUM(options.partition_scan);
        SAME_NUM(options.direct_io);
        SAME_NUM(options.bind_to_caller);
        SAME_NUM(options.timeout_sec);
        SAME_STR(options.protocol);
        SAME_STR(options.export_name);
        SAME_NUM(loop_nr);
        SAME_NUM(loop_diskseq);
        SAME_NUM(direct_io_effective);
        SAME_NUM(source_read_async);
        SAME_STR(caller);
        SAME_NUM(fuse_init_size);
        FUZZ_CHECK(a->fuse_init_size == 0 || (a->fuse_init && b->fuse_init &&
                   memcmp(a->fuse_init, b->fuse_init, a->fuse_init_size) == 0), "%s: fuse_init differs", what);
#undef SAME_STR
#undef SAME_NUM
}

/* What any accepted record must hold: the checks of a bus call, and bus-safe strings. */
static void check_accepted(const RestartRecord *r) {
        const MapOptions *o = &r->options;

        FUZZ_CHECK(mapping_name_is_valid(r->name), "name '%.200s'", str_or_null(r->name));
        FUZZ_CHECK(!r->uri_path || (r->uri_path[0] == '/' && utf8_is_valid(r->uri_path)),
                   "uri-path '%.200s'", r->uri_path);
        FUZZ_CHECK(!r->source_description || utf8_is_valid(r->source_description),
                   "source '%.200s' is not UTF-8", r->source_description);
        FUZZ_CHECK(!r->caller || (r->caller[0] == ':' && utf8_is_valid(r->caller)), "caller '%.200s'", r->caller);
        FUZZ_CHECK(o->bind_to_caller == !!r->caller, "bind-to-caller %d with caller '%s'",
                   o->bind_to_caller, str_or_null(r->caller));
        FUZZ_CHECK(o->offset % 512 == 0, "offset %" PRIu64, o->offset);
        FUZZ_CHECK(o->sector_size == 512 || o->sector_size == 1024 || o->sector_size == 2048 ||
                   o->sector_size == 4096, "sector size %" PRIu32, o->sector_size);
        FUZZ_CHECK(o->size >= o->sector_size && o->offset <= UINT64_MAX - o->size,
                   "offset %" PRIu64 ", size %" PRIu64, o->offset, o->size);
        FUZZ_CHECK(!o->protocol || strcmp(o->protocol, "raw") == 0, "protocol '%.100s'", o->protocol);
        FUZZ_CHECK(!o->export_name || strlen(o->export_name) <= EXPORT_NAME_MAX,
                   "export-name of %zu bytes", strlen(o->export_name));
        FUZZ_CHECK(r->fuse_init && r->fuse_init_size > 0 && r->fuse_init_size <= RESTART_RECORD_INIT_MAX,
                   "fuse_init of %zu bytes", r->fuse_init_size);
}

static void check_refused(const RestartRecord *r, int k, const char *errbuf, size_t errlen) {
        FUZZ_CHECK(k == -EINVAL || k == -ENOMEM, "restart_record_parse() = %d", k);
        /* "ret then holds nothing that needs freeing" */
        FUZZ_CHECK(!r->name && !r->uri_path && !r->source_description && !r->caller && !r->fuse_init &&
                   !r->options.protocol && !r->options.export_name, "%s", "a refused record holds memory");
        if (k == -EINVAL)
                FUZZ_CHECK(memchr(errbuf, '\0', errlen) && errbuf[0] != '\0', "%s", "no reason given");
}

/* Formats r, parses that, and requires the same fields; returns the text (malloc()ed) and its
 * length, or NULL when out of memory. */
static char *round_trip(const RestartRecord *r, bool with_size_set, size_t *ret_len, const char *what) {
        RestartRecord again;
        char errbuf[256] = "", *text = NULL;
        size_t len = 0;
        int k;

        k = restart_record_format(r, &text, &len);
        if (k == -ENOMEM)
                return NULL;
        FUZZ_CHECK(k == 0 && text, "%s: restart_record_format() = %d", what, k);
        FUZZ_CHECK(len <= RESTART_RECORD_MAX, "%s: a record of %zu bytes", what, len);

        k = restart_record_parse(text, len, &again, errbuf, sizeof(errbuf));
        if (k == -ENOMEM) {
                free(text);
                return NULL;
        }
        FUZZ_CHECK(k == 0, "%s: the formatted record does not parse: %s\n%.*s", what, errbuf, (int) len, text);
        check_same(r, &again, with_size_set, what);
        restart_record_done(&again);

        *ret_len = len;
        return text;
}

/* The input as a record. */
static void check_parse(const uint8_t *data, size_t size) {
        RestartRecord r;
        char errbuf[256], *text, *text2;
        size_t len, len2;
        int k;

        memset(errbuf, 'X', sizeof(errbuf));
        k = restart_record_parse((const char *) data, size, &r, errbuf, sizeof(errbuf));
        if (k < 0) {
                check_refused(&r, k, errbuf, sizeof(errbuf));
                return;
        }
        check_accepted(&r);

        text = round_trip(&r, true, &len, "parsed record");
        if (text) {
                /* The formatted text is canonical: formatting what it parses to gives it back. */
                RestartRecord again;

                k = restart_record_parse(text, len, &again, errbuf, sizeof(errbuf));
                FUZZ_CHECK(k == 0 || k == -ENOMEM, "restart_record_parse() = %d", k);
                if (k == 0) {
                        text2 = round_trip(&again, true, &len2, "formatted record");
                        FUZZ_CHECK(!text2 || (len == len2 && memcmp(text, text2, len) == 0),
                                   "formatting is not stable:\n%.*s---\n%.*s", (int) len, text,
                                   text2 ? (int) len2 : 0, text2 ?: "");
                        free(text2);
                        restart_record_done(&again);
                }
                free(text);
        }
        restart_record_done(&r);
        FUZZ_CHECK(!r.name && !r.fuse_init, "%s", "restart_record_done() left memory behind");
}

/* A string from the input as the bus could carry it: no NUL, valid UTF-8. */
static char *bus_string(FuzzInput *in, size_t max) {
        char *s = fuzz_string(in, max);

        return s ? utf8_sanitize(s) : NULL;
}

/* A name from the allowed characters, 1 to FUSELOOP_NAME_MAX of them, not starting with '.'. */
static char *valid_name(FuzzInput *in) {
        static const char allowed[] = "abcXYZ019._:@+-";
        size_t n = 1 + fuzz_u8(in) % FUSELOOP_NAME_MAX;
        char *s = malloc(n + 1);

        if (!s)
                return NULL;
        for (size_t i = 0; i < n; i++)
                s[i] = allowed[fuzz_u8(in) % (sizeof(allowed) - 1)];
        if (s[0] == '.')
                s[0] = '_';
        s[n] = '\0';
        return s;
}

/* The FUSE_INIT request as the kernel sends it: header, then struct fuse_init_in. */
static uint8_t *fuse_init_request(FuzzInput *in, size_t *ret_size) {
        struct fuse_in_header h = {
                .len = sizeof(struct fuse_in_header) + sizeof(struct fuse_init_in),
                .opcode = FUSE_INIT,
                .unique = fuzz_u64(in),
        };
        struct fuse_init_in init = {
                .major = FUSE_KERNEL_VERSION,
                .minor = fuzz_u32(in),
                .max_readahead = fuzz_u32(in),
                .flags = fuzz_u32(in),
        };
        uint8_t *b = malloc(h.len);

        if (!b)
                return NULL;
        memcpy(b, &h, sizeof(h));
        memcpy(b + sizeof(h), &init, sizeof(init));
        *ret_size = h.len;
        return b;
}

/* The input as field values of a record that the daemon could write. */
static void check_fields(const uint8_t *data, size_t size) {
        static const uint32_t sector_sizes[] = { 512, 1024, 2048, 4096 };
        FuzzInput in = { data, size };
        RestartRecord r = RESTART_RECORD_INIT;
        uint8_t flags = fuzz_u8(&in);
        char *text;
        size_t len;

        r.name = valid_name(&in);
        r.owner_uid = (uid_t) (fuzz_u32(&in) % 65536);
        r.created_usec = fuzz_u64(&in);
        r.source_description = bus_string(&in, 300);
        if (flags & 1) {
                char *p = bus_string(&in, 300);

                /* Absolute. */
                if (p && asprintf(&r.uri_path, "/%s", p) < 0)
                        r.uri_path = NULL;
                free(p);
                if (!r.uri_path)
                        goto finish;
        }
        r.options.sector_size = sector_sizes[fuzz_u8(&in) % 4];
        r.options.offset = (fuzz_u64(&in) >> (fuzz_u8(&in) % 64)) & ~UINT64_C(511);
        r.options.size = r.options.sector_size + (fuzz_u64(&in) >> (fuzz_u8(&in) % 64)) % (UINT64_C(1) << 50);
        if (r.options.offset > UINT64_MAX - r.options.size)
                r.options.offset = 0;
        r.options.size_set = flags & 2;
        r.options.partition_scan = flags & 4;
        r.options.direct_io = flags & 8;
        r.options.timeout_sec = fuzz_u32(&in) % (FUSELOOP_TIMEOUT_MAX_SEC + 1);
        r.direct_io_effective = flags & 16;
        r.source_read_async = fuzz_u8(&in) & 1;
        if (flags & 32) {
                r.options.protocol = strdup("raw");
                if (!r.options.protocol)
                        goto finish;
        }
        if (flags & 64) {
                r.options.export_name = bus_string(&in, 300);
                if (!r.options.export_name)
                        goto finish;
        }
        if (flags & 128) {
                r.options.bind_to_caller = true;
                if (asprintf(&r.caller, ":%" PRIu32 ".%" PRIu32, fuzz_u32(&in) % 100000, fuzz_u32(&in)) < 0) {
                        r.caller = NULL;
                        goto finish;
                }
        }
        r.loop_nr = (int) (fuzz_u32(&in) % (1u << 20));
        r.loop_diskseq = 1 + fuzz_u64(&in) % (UINT64_MAX - 1);
        r.fuse_init = fuse_init_request(&in, &r.fuse_init_size);
        if (!r.name || !r.source_description || !r.fuse_init)
                goto finish;

        /* size_set is how the size was asked for, not what a record keeps. */
        text = round_trip(&r, false, &len, "record from fields");
        free(text);

finish:
        restart_record_done(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        check_parse(data, size);
        check_fields(data, size);
        return 0;
}
