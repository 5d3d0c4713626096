/* Unit tests for Map and Unmap option validation (src/daemon/options.c). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "bus-names.h"
#include "options.h"
#include "tests.h"

static int set_t(MapOptions *o, const char *key, uint64_t v, char *err, size_t len) {
        OptionValue ov = { .t = v };

        return map_options_set(o, key, "t", &ov, err, len);
}

static void test_known_options(void) {
        MapOptions o = MAP_OPTIONS_INIT;
        OptionValue v;
        char err[256];

        CHECK_INT_EQ(set_t(&o, "offset", 4096, err, sizeof(err)), 0);
        CHECK_INT_EQ(o.offset, 4096);
        CHECK_INT_EQ(set_t(&o, "size", 8192, err, sizeof(err)), 0);
        CHECK(o.size_set && o.size == 8192, "size %llu", (unsigned long long) o.size);

        v = (OptionValue) { .b = 1 };
        CHECK_INT_EQ(map_options_set(&o, "partition-scan", "b", &v, err, sizeof(err)), 0);
        CHECK(o.partition_scan, "%s", "partition-scan not set");
        CHECK(!o.direct_io_set, "%s", "direct-io given before it was");
        CHECK_INT_EQ(map_options_set(&o, "direct-io", "b", &v, err, sizeof(err)), 0);
        CHECK(o.direct_io && o.direct_io_set, "%s", "direct-io not set");
        /* false, given, is not the same as not given (the mapping picks then) */
        v = (OptionValue) { .b = 0 };
        CHECK_INT_EQ(map_options_set(&o, "direct-io", "b", &v, err, sizeof(err)), 0);
        CHECK(!o.direct_io && o.direct_io_set, "%s", "direct-io=false not kept as given");
        v = (OptionValue) { .b = 1 };
        CHECK_INT_EQ(map_options_set(&o, "bind-to-caller", "b", &v, err, sizeof(err)), 0);
        CHECK(o.bind_to_caller, "%s", "bind-to-caller not set");

        for (uint32_t ss = 512; ss <= 4096; ss *= 2) {
                v = (OptionValue) { .u = ss };
                CHECK_INT_EQ(map_options_set(&o, "sector-size", "u", &v, err, sizeof(err)), 0);
                CHECK_INT_EQ(o.sector_size, ss);
        }

        v = (OptionValue) { .s = "raw" };
        CHECK_INT_EQ(map_options_set(&o, "protocol", "s", &v, err, sizeof(err)), 0);
        CHECK_STR_EQ(o.protocol, "raw");
        v = (OptionValue) { .s = "export" };
        CHECK_INT_EQ(map_options_set(&o, "export-name", "s", &v, err, sizeof(err)), 0);
        CHECK_STR_EQ(o.export_name, "export");

        v = (OptionValue) { .b = 1 };
        CHECK_INT_EQ(map_options_set(&o, "untrusted", "b", &v, err, sizeof(err)), 0);
        CHECK(o.untrusted, "%s", "untrusted not set");
        v = (OptionValue) { .s = "/mnt/with space" };
        CHECK_INT_EQ(map_options_set(&o, "mount-point", "s", &v, err, sizeof(err)), 0);
        CHECK_STR_EQ(o.mount_point, "/mnt/with space");

        map_options_done(&o);
        CHECK(!o.protocol && !o.export_name && !o.mount_point, "%s", "strings not freed");
}

static void test_bad_options(void) {
        MapOptions o = MAP_OPTIONS_INIT;
        OptionValue v = { .s = "1G" };
        char err[256];

        CHECK_INT_EQ(map_options_set(&o, "colour", "s", &v, err, sizeof(err)), -EINVAL);
        CHECK(strstr(err, "unknown option 'colour'"), "message '%s'", err);

        CHECK_INT_EQ(map_options_set(&o, "size", "s", &v, err, sizeof(err)), -EINVAL);
        CHECK(strstr(err, "'size' must be of type 't', not 's'"), "message '%s'", err);

        v = (OptionValue) { .s = "mnt" };
        CHECK_INT_EQ(map_options_set(&o, "mount-point", "s", &v, err, sizeof(err)), -EINVAL);
        CHECK(strstr(err, "'mount-point' must be an absolute path, not 'mnt'"), "message '%s'", err);
        v = (OptionValue) { .s = "/mnt/a\nb" };
        CHECK_INT_EQ(map_options_set(&o, "mount-point", "s", &v, err, sizeof(err)), -EINVAL);
        CHECK(strstr(err, "control characters"), "message '%s'", err);
        CHECK(!o.mount_point, "%s", "a refused mount point was kept");
        CHECK_INT_EQ(map_options_set(&o, "size", "at", &v, err, sizeof(err)), -EINVAL);
        CHECK_INT_EQ(map_options_set(&o, "partition-scan", "u", &v, err, sizeof(err)), -EINVAL);

        CHECK_INT_EQ(set_t(&o, "size", 0, err, sizeof(err)), -EINVAL);
        CHECK(strstr(err, "must not be zero"), "message '%s'", err);
        CHECK(!o.size_set, "%s", "a refused size was kept");

        v = (OptionValue) { .u = 3000 };
        CHECK_INT_EQ(map_options_set(&o, "sector-size", "u", &v, err, sizeof(err)), -EINVAL);
        CHECK(strstr(err, "3000"), "message '%s'", err);
        CHECK_INT_EQ(o.sector_size, 512);

        v = (OptionValue) { .s = "nbd" };
        CHECK_INT_EQ(map_options_set(&o, "protocol", "s", &v, err, sizeof(err)), 0);
        CHECK_STR_EQ(o.protocol, "nbd");
        v = (OptionValue) { .s = "iscsi" };
        CHECK_INT_EQ(map_options_set(&o, "protocol", "s", &v, err, sizeof(err)), -EINVAL);
        CHECK(strstr(err, "unsupported protocol 'iscsi' (supported: raw, nbd)"), "message '%s'", err);
        CHECK_STR_EQ(o.protocol, "nbd");

        CHECK(o.passthrough, "%s", "passthrough is not the default");
        v = (OptionValue) { .b = 0 };
        CHECK_INT_EQ(map_options_set(&o, "passthrough", "b", &v, err, sizeof(err)), 0);
        CHECK(!o.passthrough, "%s", "passthrough=false was not taken");

        map_options_done(&o);
}

static void test_timeout(void) {
        MapOptions o = MAP_OPTIONS_INIT;
        OptionValue v;
        char err[256];

        /* No limit unless asked for. */
        CHECK_INT_EQ(o.timeout_sec, 0);

        v = (OptionValue) { .u = 2 };
        CHECK_INT_EQ(map_options_set(&o, "timeout", "u", &v, err, sizeof(err)), 0);
        CHECK_INT_EQ(o.timeout_sec, 2);
        v = (OptionValue) { .u = FUSELOOP_TIMEOUT_MAX_SEC };
        CHECK_INT_EQ(map_options_set(&o, "timeout", "u", &v, err, sizeof(err)), 0);
        CHECK_INT_EQ(o.timeout_sec, FUSELOOP_TIMEOUT_MAX_SEC);
        v = (OptionValue) { .u = 0 };
        CHECK_INT_EQ(map_options_set(&o, "timeout", "u", &v, err, sizeof(err)), 0);
        CHECK_INT_EQ(o.timeout_sec, 0);

        /* Beyond the maximum: refused, and the value before stays. */
        v = (OptionValue) { .u = 7 };
        CHECK_INT_EQ(map_options_set(&o, "timeout", "u", &v, err, sizeof(err)), 0);
        v = (OptionValue) { .u = FUSELOOP_TIMEOUT_MAX_SEC + 1 };
        CHECK_INT_EQ(map_options_set(&o, "timeout", "u", &v, err, sizeof(err)), -EINVAL);
        CHECK(strstr(err, "'timeout' must be at most 3600 seconds") && strstr(err, "3601"),
              "message '%s'", err);
        CHECK_INT_EQ(o.timeout_sec, 7);
        v = (OptionValue) { .u = UINT32_MAX };
        CHECK_INT_EQ(map_options_set(&o, "timeout", "u", &v, err, sizeof(err)), -EINVAL);
        CHECK_INT_EQ(o.timeout_sec, 7);

        /* Seconds are a 'u', like sector-size; a 't' is refused, not converted. */
        CHECK_INT_EQ(set_t(&o, "timeout", 2, err, sizeof(err)), -EINVAL);
        CHECK(strstr(err, "'timeout' must be of type 'u', not 't'"), "message '%s'", err);
        v = (OptionValue) { .s = "2" };
        CHECK_INT_EQ(map_options_set(&o, "timeout", "s", &v, err, sizeof(err)), -EINVAL);
        CHECK_INT_EQ(o.timeout_sec, 7);
        CHECK_INT_EQ(map_option_type("timeout"), 'u');

        map_options_done(&o);
}

static void test_resolve(void) {
        MapOptions o = MAP_OPTIONS_INIT;
        char err[256];

        /* Default: everything after the offset. */
        CHECK_INT_EQ(map_options_resolve(&o, 1 << 20, err, sizeof(err)), 0);
        CHECK_INT_EQ(o.size, 1 << 20);

        o = MAP_OPTIONS_INIT;
        o.offset = 4096;
        CHECK_INT_EQ(map_options_resolve(&o, 1 << 20, err, sizeof(err)), 0);
        CHECK_INT_EQ(o.size, (1 << 20) - 4096);

        /* An image that is not a multiple of 4096 maps whole. */
        o = MAP_OPTIONS_INIT;
        CHECK_INT_EQ(map_options_resolve(&o, (1 << 20) + 1234, err, sizeof(err)), 0);
        CHECK_INT_EQ(o.size, (1 << 20) + 1234);

        o = MAP_OPTIONS_INIT;
        o.offset = 1 << 20;
        CHECK_INT_EQ(map_options_resolve(&o, 1 << 20, err, sizeof(err)), -EINVAL);
        CHECK(strstr(err, "beyond the end of the source"), "message '%s'", err);

        o = MAP_OPTIONS_INIT;
        o.offset = 1000;
        CHECK_INT_EQ(map_options_resolve(&o, 1 << 20, err, sizeof(err)), -EINVAL);
        CHECK(strstr(err, "multiple of 512"), "message '%s'", err);

        o = MAP_OPTIONS_INIT;
        o.offset = 4096;
        o.size = 1 << 20;
        o.size_set = true;
        CHECK_INT_EQ(map_options_resolve(&o, 1 << 20, err, sizeof(err)), -EINVAL);
        CHECK(strstr(err, "goes beyond the end"), "message '%s'", err);

        /* offset + size overflowing 64 bits must not wrap into "fits". */
        o = MAP_OPTIONS_INIT;
        o.offset = 512;
        o.size = UINT64_MAX - 100;
        o.size_set = true;
        CHECK_INT_EQ(map_options_resolve(&o, 1 << 20, err, sizeof(err)), -EINVAL);

        o = MAP_OPTIONS_INIT;
        o.sector_size = 4096;
        o.size = 2048;
        o.size_set = true;
        CHECK_INT_EQ(map_options_resolve(&o, 1 << 20, err, sizeof(err)), -EINVAL);
        CHECK(strstr(err, "smaller than one sector"), "message '%s'", err);
}

static void test_unmap_options(void) {
        UnmapOptions o = {};
        OptionValue v = { .b = 1 };
        char err[256];

        CHECK_INT_EQ(unmap_options_set(&o, "lazy", "b", &v, err, sizeof(err)), 0);
        CHECK(o.lazy, "%s", "lazy not set");
        CHECK_INT_EQ(unmap_options_set(&o, "lazy", "s", &v, err, sizeof(err)), -EINVAL);
        CHECK_INT_EQ(unmap_options_set(&o, "force", "b", &v, err, sizeof(err)), -EINVAL);
        CHECK(strstr(err, "unknown option 'force'"), "message '%s'", err);
}

int main(void) {
        test_known_options();
        test_bad_options();
        test_timeout();
        test_resolve();
        test_unmap_options();
        return test_summary("test-options");
}
