/* Unit tests for the restart record (src/daemon/restart-record.c): round trips, and records that
 * must be refused. */
#include <errno.h>
#include <linux/fuse.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "restart-record.h"
#include "tests.h"

/* A FUSE_INIT request as a kernel of protocol 7.x sends it. */
static size_t make_init(uint8_t *buf, uint32_t minor) {
        struct fuse_in_header h = {
                .len = sizeof(struct fuse_in_header) + sizeof(struct fuse_init_in),
                .opcode = FUSE_INIT,
                .unique = 2,
        };
        struct fuse_init_in in = {
                .major = FUSE_KERNEL_VERSION,
                .minor = minor,
                .max_readahead = 131072,
                .flags = FUSE_ASYNC_READ | FUSE_BIG_WRITES,
        };

        memcpy(buf, &h, sizeof(h));
        memcpy(buf + sizeof(h), &in, sizeof(in));
        return h.len;
}

static void fill(RestartRecord *r, uint8_t *init) {
        *r = RESTART_RECORD_INIT;
        r->name = strdup("vm-100:disk@0");
        r->owner_uid = 1000;
        r->created_usec = 1700000000123456ULL;
        r->uri_path = strdup("/var/lib/images/a b\\c\n\xc3\xa9.img");
        r->source_description = strdup(r->uri_path);
        r->options.offset = 1048576;
        r->options.size = 8388608;
        r->options.size_set = true;
        r->options.sector_size = 4096;
        r->options.partition_scan = true;
        r->options.bind_to_caller = true;
        r->options.timeout_sec = 30;
        r->options.untrusted = true;
        r->options.mount_point = strdup("/mnt/restore here");
        r->caller = strdup(":1.42");
        r->loop_nr = 7;
        r->loop_diskseq = 123;
        r->loop_read_ios_base = 4711;
        r->loop_read_sectors_base = 1ULL << 40;
        r->direct_io_effective = true;
        r->source_read_async = true;
        r->fuse_init = init;
        r->fuse_init_size = make_init(init, 38);
        r->fuse_offset = 0;
        r->fuse_size = 16777216;
        r->passthrough_id = 3;
        r->options.passthrough = false;
}

static void test_round_trip(void) {
        uint8_t init[RESTART_RECORD_INIT_MAX];
        RestartRecord a, b;
        char *text = NULL, err[256] = "";
        size_t len = 0;

        fill(&a, init);
        CHECK_INT_EQ(restart_record_format(&a, &text, &len), 0);
        CHECK(len == strlen(text), "length %zu", len);
        /* Every line is one line: the newline in the path is escaped. */
        CHECK(strstr(text, "a\\x20b\\x5cc\\x0a\\xc3\\xa9.img") != NULL, "escaped path in:\n%s", text);

        CHECK_INT_EQ(restart_record_parse(text, len, &b, err, sizeof(err)), 0);
        CHECK_STR_EQ(b.name, a.name);
        CHECK_STR_EQ(b.uri_path, a.uri_path);
        CHECK_STR_EQ(b.source_description, a.source_description);
        CHECK_STR_EQ(b.caller, a.caller);
        CHECK_INT_EQ(b.owner_uid, 1000);
        CHECK_INT_EQ(b.created_usec, a.created_usec);
        CHECK_INT_EQ(b.options.offset, a.options.offset);
        CHECK_INT_EQ(b.options.size, a.options.size);
        CHECK(b.options.size_set, "%s", "size_set");
        CHECK_INT_EQ(b.options.sector_size, 4096);
        CHECK_INT_EQ(b.options.timeout_sec, 30);
        CHECK(b.options.untrusted, "%s", "untrusted");
        CHECK_STR_EQ(b.options.mount_point, "/mnt/restore here");
        CHECK(b.options.partition_scan && b.options.bind_to_caller && !b.options.direct_io, "%s", "flags");
        CHECK_INT_EQ(b.loop_nr, 7);
        CHECK_INT_EQ(b.loop_diskseq, 123);
        CHECK_INT_EQ(b.loop_read_ios_base, 4711);
        CHECK(b.loop_read_sectors_base == 1ULL << 40, "read-sectors-base %llu",
              (unsigned long long) b.loop_read_sectors_base);
        CHECK(b.direct_io_effective, "%s", "dio");
        CHECK(b.source_read_async, "%s", "source-async");
        CHECK(b.fuse_init_size == a.fuse_init_size && memcmp(b.fuse_init, init, a.fuse_init_size) == 0,
              "fuse-init size %zu", b.fuse_init_size);
        CHECK(b.fuse_offset == 0 && b.fuse_size == 16777216, "fuse extent %llu+%llu",
              (unsigned long long) b.fuse_offset, (unsigned long long) b.fuse_size);
        CHECK_INT_EQ(b.passthrough_id, 3);
        CHECK(!b.options.passthrough, "%s", "passthrough option");

        /* Without the optional fields. */
        restart_record_done(&b);
        free(text);
        a.fuse_init = NULL;
        restart_record_done(&a);
        fill(&a, init);
        a.uri_path = mfree(a.uri_path);
        a.caller = mfree(a.caller);
        a.options.bind_to_caller = false;
        a.options.mount_point = mfree(a.options.mount_point);
        CHECK_INT_EQ(restart_record_format(&a, &text, &len), 0);
        CHECK_INT_EQ(restart_record_parse(text, len, &b, err, sizeof(err)), 0);
        CHECK(!b.uri_path && !b.caller && !b.options.mount_point, "%s", "optional fields absent");
        restart_record_done(&b);
        a.fuse_init = NULL;
        restart_record_done(&a);
        free(text);
}

/* Replaces the first line starting with "key=" in text by line (or drops it for NULL). */
static char *edit(const char *text, const char *key, const char *line) {
        char *out = malloc(strlen(text) + (line ? strlen(line) : 0) + 2), *o = out;
        size_t klen = strlen(key);

        for (const char *p = text; *p;) {
                const char *nl = strchr(p, '\n');
                size_t n = nl ? (size_t) (nl - p) + 1 : strlen(p);

                if (strncmp(p, key, klen) == 0 && p[klen] == '=') {
                        if (line)
                                o += sprintf(o, "%s\n", line);
                } else {
                        memcpy(o, p, n);
                        o += n;
                }
                p += n;
        }
        *o = '\0';
        return out;
}

static void test_refused(void) {
        static const struct {
                const char *key, *line;
        } cases[] = {
                { "name", NULL },
                { "name", "name=.hidden" },
                { "name", "name=a/b" },
                { "name", "name=ok\\x00" },
                { "name", "name=ok\\x4" },
                { "owner", "owner=4294967295" },
                { "owner", "owner=-1" },
                { "loop", "loop=x" },
                { "diskseq", "diskseq=0" },
                { "dio", "dio=2" },
                { "source-async", NULL },
                { "caller", "caller=org.example.Name" },
                { "caller", NULL },                      /* bind-to-caller without a caller */
                { "uri-path", "uri-path=relative/path" },
                { "source", "source=\\xff\\xfe" },       /* not UTF-8 */
                { "fuse-init", "fuse-init=00" },
                { "fuse-init", "fuse-init=zz" },
                { "fuse-init", NULL },
                { "size", NULL },
                { "size", "size=0" },
                { "offset", "offset=100" },              /* not a multiple of 512 */
                { "sector-size", "sector-size=1000" },
                { "timeout", "timeout=86400" },          /* beyond the maximum */
                { "partition-scan", "partition-scan=yes" },
                { "dio", "dio=1\nprotocol=nbd+unknown" },
                { "created", "created=1\nunknown-key=1" },
                { "dio", "dio=1\ndio=1" },               /* twice */
                { "read-ios-base", "read-ios-base=-1" },
                { "read-sectors-base", "read-sectors-base=1x" },
                { "untrusted", "untrusted=2" },
                { "untrusted", "untrusted=1\nmount-point=relative" },
                { "fuse-size", "fuse-size=4096" },        /* does not hold the mapping */
                { "fuse-offset", "fuse-offset=2097152" }, /* starts after the mapping */
                { "passthrough-id", "passthrough-id=-1" },
        };
        uint8_t init[RESTART_RECORD_INIT_MAX];
        RestartRecord a, b;
        char *text, err[256];
        size_t len;

        fill(&a, init);
        CHECK_INT_EQ(restart_record_format(&a, &text, &len), 0);

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char *t = edit(text, cases[i].key, cases[i].line);

                err[0] = '\0';
                CHECK_INT_EQ(restart_record_parse(t, strlen(t), &b, err, sizeof(err)), -EINVAL);
                CHECK(err[0] != '\0', "no reason for case %zu", i);
                CHECK(!b.name && !b.fuse_init, "case %zu left fields set", i);
                free(t);
        }

        /* Cut short anywhere: refused, never read past the end. */
        for (size_t n = 0; n < len; n++) {
                char *t = malloc(n ? n : 1);

                memcpy(t, text, n);
                CHECK_INT_EQ(restart_record_parse(t, n, &b, err, sizeof(err)), -EINVAL);
                free(t);
        }

        /* A record of the version before the counter bases and the untrusted and mount-point
         * options: still resumed, with what it lacks as 0 or unset. */
        {
                char *t1 = edit(text, "read-ios-base", NULL), *t2 = edit(t1, "read-sectors-base", NULL);
                char *t3 = edit(t2, "untrusted", NULL), *t4 = edit(t3, "mount-point", NULL);
                char *t5 = edit(t4, "fuse-offset", NULL), *t6 = edit(t5, "fuse-size", NULL);
                char *t7 = edit(t6, "passthrough-id", NULL);

                CHECK_INT_EQ(restart_record_parse(t7, strlen(t7), &b, err, sizeof(err)), 0);
                CHECK(b.loop_read_ios_base == 0 && b.loop_read_sectors_base == 0 && !b.options.untrusted &&
                      !b.options.mount_point, "%s", "an earlier version's record");
                /* Its FUSE file showed the mapping's extent. */
                CHECK(b.fuse_offset == a.options.offset && b.fuse_size == a.options.size && b.passthrough_id == 0,
                      "%s", "an earlier version's FUSE extent");
                restart_record_done(&b);
                free(t1);
                free(t2);
                free(t3);
                free(t4);
                free(t5);
                free(t6);
                free(t7);
        }

        /* Another version. */
        text[strlen("fuseloop-restart-record ")] = '9';
        CHECK_INT_EQ(restart_record_parse(text, len, &b, err, sizeof(err)), -EINVAL);

        free(text);
        a.fuse_init = NULL;
        restart_record_done(&a);
}

int main(void) {
        test_round_trip();
        test_refused();
        return test_summary("test-restart-record");
}
