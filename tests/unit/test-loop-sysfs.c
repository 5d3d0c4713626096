/* Unit tests for the sysfs parsing of src/daemon/loop-device.c. */
#include <errno.h>
#include <sys/sysmacros.h>

#include "loop-device.h"
#include "tests.h"

static void test_parse_devnum(void) {
        dev_t d = 0;

        CHECK_INT_EQ(parse_devnum("7:0", &d), 0);
        CHECK(major(d) == 7 && minor(d) == 0, "got %u:%u", major(d), minor(d));
        CHECK_INT_EQ(parse_devnum("259:1048575", &d), 0);
        CHECK(major(d) == 259 && minor(d) == 1048575, "got %u:%u", major(d), minor(d));

        CHECK_INT_EQ(parse_devnum("7", &d), -EINVAL);
        CHECK_INT_EQ(parse_devnum(":0", &d), -EINVAL);
        CHECK_INT_EQ(parse_devnum("7:", &d), -EINVAL);
        CHECK_INT_EQ(parse_devnum("7:0\n", &d), -EINVAL);
        CHECK_INT_EQ(parse_devnum("-7:0", &d), -EINVAL);
        CHECK_INT_EQ(parse_devnum("4096:0", &d), -ERANGE);
        CHECK_INT_EQ(parse_devnum("7:1048576", &d), -ERANGE);
        CHECK_INT_EQ(parse_devnum("99999999999999999999999:0", &d), -ERANGE);
}

static void test_partition_names(void) {
        unsigned n = 0;

        CHECK(sysfs_partition_name_parse("loop3", "loop3p1", &n) && n == 1, "n=%u", n);
        CHECK(sysfs_partition_name_parse("loop3", "loop3p128", &n) && n == 128, "n=%u", n);
        CHECK(sysfs_partition_name_parse("loop300", "loop300p2", &n) && n == 2, "n=%u", n);
        CHECK(!sysfs_partition_name_parse("loop3", "loop30p1", &n), "%s", "loop30p1 matched loop3");
        CHECK(!sysfs_partition_name_parse("loop3", "loop3", &n), "%s", "the disk matched");
        CHECK(!sysfs_partition_name_parse("loop3", "loop3p", &n), "%s", "no number matched");
        CHECK(!sysfs_partition_name_parse("loop3", "loop3p0", &n), "%s", "partition 0 matched");
        CHECK(!sysfs_partition_name_parse("loop3", "loop3p01", &n), "%s", "leading zero matched");
        CHECK(!sysfs_partition_name_parse("loop3", "queue", &n), "%s", "queue matched");
        CHECK(!sysfs_partition_name_parse("loop3", "loop3p1x", &n), "%s", "trailing junk matched");
}

int main(void) {
        test_parse_devnum();
        test_partition_names();
        return test_summary("test-loop-sysfs");
}
