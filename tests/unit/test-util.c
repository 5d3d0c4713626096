/* Unit tests for the pure helpers in src/shared/util.c: names, sizes, MapURI sources, loop device names. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bus-names.h"
#include "log.h"
#include "tests.h"
#include "util.h"

static void check_name(const char *name, bool expected, int line) {
        bool r = mapping_name_is_valid(name);

        n_checked++;
        if (r != expected) {
                n_failed++;
                fprintf(stderr, "%s:%d: mapping_name_is_valid(\"%s\") = %s, expected %s\n",
                        __FILE__, line, name ? name : "(null)", r ? "true" : "false",
                        expected ? "true" : "false");
        }
}
#define NAME_OK(s) check_name((s), true, __LINE__)
#define NAME_BAD(s) check_name((s), false, __LINE__)

static void test_mapping_name_is_valid(void) {
        char buf[FUSELOOP_NAME_MAX + 2];

        NAME_OK("a");
        NAME_OK("Z");
        NAME_OK("0");
        NAME_OK("vm-100-disk-0");
        NAME_OK("backup_2024-01-01T10:00:00");
        NAME_OK("user@host");
        NAME_OK("a+b");
        NAME_OK("drive-scsi0.img.fidx");
        NAME_OK("a._:@+-Z9");                   /* every allowed punctuation character */
        NAME_OK("x.");
        NAME_OK("-leading-dash");
        NAME_OK("_leading_underscore");
        NAME_OK(":colon");

        NAME_BAD(NULL);
        NAME_BAD("");
        NAME_BAD("../x");
        NAME_BAD("..");
        NAME_BAD(".");
        NAME_BAD(".hidden");
        NAME_BAD("a/b");
        NAME_BAD("/abs");
        NAME_BAD("a b");
        NAME_BAD(" a");
        NAME_BAD("a\tb");
        NAME_BAD("a\nb");
        NAME_BAD("a\\b");
        NAME_BAD("a*b");
        NAME_BAD("a?b");
        NAME_BAD("a%b");
        NAME_BAD("a,b");
        NAME_BAD("a=b");
        NAME_BAD("a'b");
        NAME_BAD("a\"b");
        NAME_BAD("a$b");
        NAME_BAD("a#b");
        NAME_BAD("a~b");
        NAME_BAD("\xc3\xa4");                   /* UTF-8 'ä' */
        NAME_BAD("a\x7f");

        /* Exactly the maximum length is fine, one more is not. */
        memset(buf, 'a', FUSELOOP_NAME_MAX);
        buf[FUSELOOP_NAME_MAX] = '\0';
        CHECK_INT_EQ(strlen(buf), 128);
        NAME_OK(buf);
        buf[FUSELOOP_NAME_MAX] = 'a';
        buf[FUSELOOP_NAME_MAX + 1] = '\0';
        CHECK_INT_EQ(strlen(buf), 129);
        NAME_BAD(buf);

        /* Each allowed punctuation character alone after a letter, and each as the first one
         * (only '.' is refused there). */
        for (const char *p = "._:@+-"; *p; p++) {
                char s[3] = { 'a', *p, '\0' }, t[3] = { *p, 'a', '\0' };

                NAME_OK(s);
                check_name(t, *p != '.', __LINE__);
        }
}

static void check_size(const char *s, int expected_r, uint64_t expected, int line) {
        uint64_t v = UINT64_C(0xdeadbeef);
        int r = parse_size(s, &v);

        n_checked++;
        if (r != expected_r || (r == 0 && v != expected) || (r < 0 && v != UINT64_C(0xdeadbeef))) {
                n_failed++;
                fprintf(stderr, "%s:%d: parse_size(\"%s\") = %d (%s), value %" PRIu64
                        "; expected %d (%s), value %" PRIu64 "%s\n",
                        __FILE__, line, s ? s : "(null)", r, strerror(r < 0 ? -r : 0), v,
                        expected_r, strerror(expected_r < 0 ? -expected_r : 0),
                        expected_r == 0 ? expected : UINT64_C(0xdeadbeef),
                        r < 0 ? " (out-parameter must be untouched on failure)" : "");
        }
}
#define SIZE_OK(s, v) check_size((s), 0, (v), __LINE__)
#define SIZE_ERR(s, e) check_size((s), (e), 0, __LINE__)

static void test_parse_size(void) {
        SIZE_OK("0", 0);
        SIZE_OK("1", 1);
        SIZE_OK("512", 512);
        SIZE_OK("4097", 4097);
        SIZE_OK("1K", UINT64_C(1024));
        SIZE_OK("1k", UINT64_C(1024));
        SIZE_OK("1KiB", UINT64_C(1024));
        SIZE_OK("1KB", UINT64_C(1024));
        SIZE_OK("3M", UINT64_C(3) << 20);
        SIZE_OK("3m", UINT64_C(3) << 20);
        SIZE_OK("3MiB", UINT64_C(3) << 20);
        SIZE_OK("2G", UINT64_C(2) << 30);
        SIZE_OK("2g", UINT64_C(2) << 30);
        SIZE_OK("2GiB", UINT64_C(2) << 30);
        SIZE_OK("5T", UINT64_C(5) << 40);
        SIZE_OK("5t", UINT64_C(5) << 40);
        SIZE_OK("5TiB", UINT64_C(5) << 40);
        SIZE_OK("0K", 0);
        SIZE_OK("007", 7);
        SIZE_OK("18446744073709551615", UINT64_MAX);
        SIZE_OK("16777215T", UINT64_C(16777215) << 40);
        /* Leading zeros do not count against the length limit of the digits. */
        SIZE_OK("0000000000000000000000000000000000000000000000000001K", UINT64_C(1024));
        SIZE_OK("00000000000000000000000000000000000000000000000000000", 0);
        SIZE_OK("000000000000000000000000000000000018446744073709551615", UINT64_MAX);

        SIZE_ERR("18446744073709551616", -ERANGE);
        SIZE_ERR("99999999999999999999", -ERANGE);
        SIZE_ERR("16777216T", -ERANGE);                 /* 2^64 */
        SIZE_ERR("17179869184G", -ERANGE);              /* 2^64 */
        SIZE_ERR("18014398509481984K", -ERANGE);        /* 2^64 */
        SIZE_ERR("0000000000000000000000000000000000018446744073709551616", -ERANGE);
        SIZE_ERR("1000000000000000000000000000000000000000000000000000", -ERANGE);

        SIZE_ERR("", -EINVAL);
        SIZE_ERR(NULL, -EINVAL);
        SIZE_ERR("K", -EINVAL);
        SIZE_ERR("abc", -EINVAL);
        SIZE_ERR("-1", -EINVAL);
        SIZE_ERR("+1", -EINVAL);
        SIZE_ERR(" 1", -EINVAL);
        SIZE_ERR("1 ", -EINVAL);
        SIZE_ERR("1 K", -EINVAL);
        SIZE_ERR("1.5G", -EINVAL);
        SIZE_ERR("1X", -EINVAL);
        SIZE_ERR("1P", -EINVAL);
        SIZE_ERR("1KK", -EINVAL);
        SIZE_ERR("1Ki", -EINVAL);
        SIZE_ERR("1KiBx", -EINVAL);
        SIZE_ERR("0x10", -EINVAL);
}

static void check_format(uint64_t bytes, const char *expected, int line) {
        char buf[FORMAT_SIZE_MAX];
        const char *r;

        memset(buf, 'X', sizeof(buf));
        r = format_size(buf, sizeof(buf), bytes);
        n_checked++;
        if (r != buf || memchr(buf, '\0', sizeof(buf)) == NULL || strcmp(buf, expected) != 0) {
                n_failed++;
                fprintf(stderr, "%s:%d: format_size(%" PRIu64 ") = \"%.*s\"%s, expected \"%s\"\n",
                        __FILE__, line, bytes, (int) sizeof(buf), buf,
                        r != buf ? " (did not return buf)" : "", expected);
        }
}
#define FORMAT(b, s) check_format((b), (s), __LINE__)

static void test_format_size(void) {
        FORMAT(0, "0");
        FORMAT(1, "1");
        FORMAT(512, "512");
        FORMAT(1023, "1023");
        FORMAT(1024, "1K");
        FORMAT(1536, "1.5K");
        FORMAT(UINT64_C(100) << 20, "100M");
        FORMAT(UINT64_C(16) << 20, "16M");
        FORMAT((UINT64_C(1) << 20) + (UINT64_C(1) << 19), "1.5M");
        FORMAT(UINT64_C(1) << 30, "1G");
        FORMAT(UINT64_C(2) << 30, "2G");
        FORMAT((UINT64_C(5) << 30) / 2, "2.5G");
        FORMAT(UINT64_C(3) << 40, "3T");
        FORMAT(UINT64_C(1) << 50, "1P");
        FORMAT(UINT64_C(1) << 60, "1E");
        FORMAT(UINT64_MAX, "16.0E");

        /* Round-trip through parse_size() for exact multiples. */
        const uint64_t values[] = { 0, 1, 4096, UINT64_C(7) << 20, UINT64_C(9) << 30, UINT64_C(11) << 40 };
        for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
                char buf[FORMAT_SIZE_MAX];
                uint64_t v = 0;

                CHECK_INT_EQ(parse_size(format_size(buf, sizeof(buf), values[i]), &v), 0);
                CHECK(v == values[i], "round trip of %" PRIu64 " via \"%s\" gave %" PRIu64,
                      values[i], buf, v);
        }
}

static void check_uri(const char *uri, int expected_r, const char *expected, int line) {
        char *path = (char *) "untouched";
        int r = uri_to_path(uri, &path);

        n_checked++;
        if (r != expected_r || (r == 0 && strcmp(path, expected) != 0) ||
            (r < 0 && strcmp(path, "untouched") != 0)) {
                n_failed++;
                fprintf(stderr, "%s:%d: uri_to_path(\"%s\") = %d (%s), path \"%s\"; expected %d (%s), path \"%s\"\n",
                        __FILE__, line, uri, r, strerror(r < 0 ? -r : 0), path, expected_r,
                        strerror(expected_r < 0 ? -expected_r : 0), expected ? expected : "untouched");
        }
        if (r == 0)
                free(path);
}
#define URI_OK(u, p) check_uri((u), 0, (p), __LINE__)
#define URI_ERR(u, e) check_uri((u), (e), NULL, __LINE__)

static void test_uri_to_path(void) {
        char long_path[PATH_MAX + 2];

        /* A plain absolute path is taken as it is: no percent-decoding. */
        URI_OK("/srv/images/disk.img", "/srv/images/disk.img");
        URI_OK("/a", "/a");
        URI_OK("/p q", "/p q");
        URI_OK("/p%20q", "/p%20q");
        URI_OK("/100%", "/100%");
        URI_OK("/a/...", "/a/...");
        URI_OK("/.hidden/..x/x..", "/.hidden/..x/x..");
        URI_OK("/caf\xc3\xa9", "/caf\xc3\xa9");
        URI_OK("/a:b", "/a:b");

        /* file:// is percent-decoded, upper and lower case hex. */
        URI_OK("file:///srv/disk.img", "/srv/disk.img");
        URI_OK("file:///p%20q", "/p q");
        URI_OK("file:///%41%62c", "/Abc");
        URI_OK("file:///a%2fb", "/a/b");
        URI_OK("file:///caf%C3%A9", "/caf\xc3\xa9");
        URI_OK("file:///x%25", "/x%");
        URI_OK("file:///a:b?c#d", "/a:b?c#d");

        /* Other schemes, and anything with "://" that is not file://. */
        URI_ERR("nbd://host/export", -EPROTONOSUPPORT);
        URI_ERR("nbd+unix:///export?socket=/s", -EPROTONOSUPPORT);
        URI_ERR("FILE:///x", -EPROTONOSUPPORT);
        URI_ERR("/a://b", -EPROTONOSUPPORT);
        URI_ERR("http://x/y", -EPROTONOSUPPORT);

        /* Not absolute. */
        URI_ERR("", -EINVAL);
        URI_ERR("relative/path", -EINVAL);
        URI_ERR("file://", -EINVAL);
        URI_ERR("file://host/path", -EINVAL);
        URI_ERR("file:relative", -EINVAL);
        URI_ERR("~/x", -EINVAL);

        /* Empty, "." and ".." components, before and after decoding. */
        URI_ERR("/", -EINVAL);
        URI_ERR("file:///", -EINVAL);
        URI_ERR("//x", -EINVAL);
        URI_ERR("/a//b", -EINVAL);
        URI_ERR("/a/", -EINVAL);
        URI_ERR("/.", -EINVAL);
        URI_ERR("/..", -EINVAL);
        URI_ERR("/a/./b", -EINVAL);
        URI_ERR("/a/../b", -EINVAL);
        URI_ERR("/a/..", -EINVAL);
        URI_ERR("file:///a/%2e%2e/b", -EINVAL);
        URI_ERR("file:///a/%2E/b", -EINVAL);
        URI_ERR("file:///a%2f%2fb", -EINVAL);
        URI_ERR("file:///a%2f", -EINVAL);

        /* Bad escapes, %00, and bytes that do not decode to UTF-8. */
        URI_ERR("file:///a%", -EINVAL);
        URI_ERR("file:///a%4", -EINVAL);
        URI_ERR("file:///a%4g", -EINVAL);
        URI_ERR("file:///a%g4", -EINVAL);
        URI_ERR("file:///a%00b", -EINVAL);
        URI_ERR("file:///a% 1", -EINVAL);
        URI_ERR("file:///a%+1", -EINVAL);
        URI_ERR("file:///a%ff", -EINVAL);
        URI_ERR("file:///a%c3", -EINVAL);
        URI_ERR("file:///a%c0%af", -EINVAL);
        URI_ERR("file:///a%ed%a0%80", -EINVAL);
        URI_ERR("/a\xff", -EINVAL);

        /* The length limit applies to the input: PATH_MAX - 1 bytes are fine, PATH_MAX not. */
        memset(long_path, 'a', sizeof(long_path));
        long_path[0] = '/';
        long_path[PATH_MAX - 1] = '\0';
        URI_OK(long_path, long_path);
        long_path[PATH_MAX - 1] = 'a';
        long_path[PATH_MAX] = '\0';
        URI_ERR(long_path, -EINVAL);
}

static void test_loop_device_parse_number(void) {
        CHECK_INT_EQ(loop_device_parse_number("/dev/loop0"), 0);
        CHECK_INT_EQ(loop_device_parse_number("/dev/loop7"), 7);
        CHECK_INT_EQ(loop_device_parse_number("/dev/loop256"), 256);
        CHECK_INT_EQ(loop_device_parse_number("/dev/loop1048575"), 1048575);
        CHECK_INT_EQ(loop_device_parse_number("loop0"), 0);
        CHECK_INT_EQ(loop_device_parse_number("loop12"), 12);
        CHECK_INT_EQ(loop_device_parse_number("loop300"), 300);

        CHECK_INT_EQ(loop_device_parse_number("/dev/loop"), -EINVAL);
        CHECK_INT_EQ(loop_device_parse_number("loop"), -EINVAL);
        CHECK_INT_EQ(loop_device_parse_number("/dev/loop01"), -EINVAL);
        CHECK_INT_EQ(loop_device_parse_number("loop00"), -EINVAL);
        CHECK_INT_EQ(loop_device_parse_number("/dev/sda"), -EINVAL);
        CHECK_INT_EQ(loop_device_parse_number("/dev/loop-control"), -EINVAL);
        CHECK_INT_EQ(loop_device_parse_number("loop-1"), -EINVAL);
        CHECK_INT_EQ(loop_device_parse_number("/dev/loop0p1"), -EINVAL);
        CHECK_INT_EQ(loop_device_parse_number("/dev/loop 1"), -EINVAL);
        CHECK_INT_EQ(loop_device_parse_number("/dev/loop1 "), -EINVAL);
        CHECK_INT_EQ(loop_device_parse_number("dev/loop1"), -EINVAL);
        CHECK_INT_EQ(loop_device_parse_number("/dev/fuseloop/loop1"), -EINVAL);
        CHECK_INT_EQ(loop_device_parse_number("/dev/loop99999999999999999999"), -EINVAL);
        CHECK_INT_EQ(loop_device_parse_number(""), -EINVAL);
        CHECK_INT_EQ(loop_device_parse_number(NULL), -EINVAL);
}

static void test_safe_atou64(void) {
        uint64_t v = 42;

        CHECK_INT_EQ(safe_atou64("0", &v), 0);
        CHECK_INT_EQ(v, 0);
        CHECK_INT_EQ(safe_atou64("18446744073709551615", &v), 0);
        CHECK(v == UINT64_MAX, "v = %" PRIu64, v);
        CHECK_INT_EQ(safe_atou64("18446744073709551616", &v), -ERANGE);
        CHECK_INT_EQ(safe_atou64("", &v), -EINVAL);
        CHECK_INT_EQ(safe_atou64("12a", &v), -EINVAL);
        CHECK_INT_EQ(safe_atou64("-1", &v), -EINVAL);
}

static void test_startswith(void) {
        CHECK_STR_EQ(startswith("/dev/loop3", "/dev/"), "loop3");
        CHECK_STR_EQ(startswith("abc", ""), "abc");
        CHECK_STR_EQ(startswith("abc", "abc"), "");
        CHECK(startswith("ab", "abc") == NULL, "%s", "startswith(\"ab\", \"abc\") != NULL");
        CHECK(startswith("xbc", "a") == NULL, "%s", "startswith(\"xbc\", \"a\") != NULL");
}

static void test_read_files(void) {
        char path[] = "/tmp/test-util.XXXXXX";
        char *s = NULL;
        uint64_t v = 0;
        FILE *f;
        int fd;

        fd = mkstemp(path);
        CHECK(fd >= 0, "mkstemp: %s", strerror(errno));
        if (fd < 0)
                return;
        f = fdopen(fd, "w");
        CHECK(f != NULL, "fdopen: %s", strerror(errno));
        if (!f)
                return;
        fputs("4096\nsecond line\n", f);
        fclose(f);

        CHECK_INT_EQ(read_one_line_file(path, &s), 0);
        CHECK_STR_EQ(s, "4096");
        free(s);
        CHECK_INT_EQ(read_u64_file(path, &v), 0);
        CHECK_INT_EQ(v, 4096);

        f = fopen(path, "w");
        if (f) {
                fputs("12x\n", f);
                fclose(f);
        }
        CHECK_INT_EQ(read_u64_file(path, &v), -EINVAL);
        (void) unlink(path);
        CHECK_INT_EQ(read_one_line_file(path, &s), -ENOENT);
}

static void test_block_stat_parse(void) {
        BlockStat st = {};

        /* Linux 6.x: 17 fields, right-aligned in columns. */
        CHECK_INT_EQ(block_stat_parse("     274        0    12466      101        0        0        0"
                                      "        0        2       96      101        0        0        0"
                                      "        0        0        0", &st), 0);
        CHECK_INT_EQ(st.read_ios, 274);
        CHECK_INT_EQ(st.read_sectors, 12466);
        CHECK_INT_EQ(st.read_ticks_ms, 101);
        CHECK_INT_EQ(st.in_flight, 2);
        CHECK_INT_EQ(st.io_ticks_ms, 96);
        CHECK_INT_EQ(st.time_in_queue_ms, 101);
        /* Exactly the 11 fields of old kernels, with a newline. */
        CHECK_INT_EQ(block_stat_parse("1 2 3 4 5 6 7 8 9 10 11\n", &st), 0);
        CHECK_INT_EQ(st.read_merges, 2);
        CHECK_INT_EQ(st.write_ios, 5);
        CHECK_INT_EQ(st.write_sectors, 7);
        CHECK_INT_EQ(st.time_in_queue_ms, 11);
        CHECK_INT_EQ(block_stat_parse("1 2 3 4 5 6 7 8 9 10", &st), -EINVAL);
        CHECK_INT_EQ(block_stat_parse("1 2 3 4 5 6 7 8 9 10 x", &st), -EINVAL);
        CHECK_INT_EQ(block_stat_parse("1 2 3 4 5 6 7 8 9 10 11x", &st), -EINVAL);
        CHECK_INT_EQ(block_stat_parse("1 2 -3 4 5 6 7 8 9 10 11", &st), -EINVAL);
        CHECK_INT_EQ(block_stat_parse("99999999999999999999 2 3 4 5 6 7 8 9 10 11", &st), -EINVAL);
        CHECK_INT_EQ(block_stat_parse("", &st), -EINVAL);
        CHECK_INT_EQ(block_stat_read_loop(-1, &st), -ENOENT);
}

static void test_log_stderr_is_journal(void) {
        char path[] = "/tmp/test-util-log.XXXXXX", v[64];
        struct stat st;
        int fd, saved;

        fd = mkstemp(path);
        CHECK(fd >= 0, "mkstemp: %s", strerror(errno));
        if (fd < 0)
                return;
        saved = dup(STDERR_FILENO);
        CHECK(saved >= 0 && dup2(fd, STDERR_FILENO) >= 0 && fstat(fd, &st) >= 0, "%s", strerror(errno));

        (void) unsetenv("JOURNAL_STREAM");
        CHECK(!log_stderr_is_journal(), "%s", "no JOURNAL_STREAM");
        (void) snprintf(v, sizeof(v), "%llu:%llu", (unsigned long long) st.st_dev, (unsigned long long) st.st_ino);
        (void) setenv("JOURNAL_STREAM", v, 1);
        CHECK(log_stderr_is_journal(), "JOURNAL_STREAM=%s names stderr", v);
        /* Inherited by a process whose stderr goes elsewhere: not the journal. */
        (void) snprintf(v, sizeof(v), "%llu:%llu", (unsigned long long) st.st_dev, (unsigned long long) st.st_ino + 1);
        (void) setenv("JOURNAL_STREAM", v, 1);
        CHECK(!log_stderr_is_journal(), "JOURNAL_STREAM=%s names another inode", v);
        (void) snprintf(v, sizeof(v), "%llu:%llux", (unsigned long long) st.st_dev, (unsigned long long) st.st_ino);
        (void) setenv("JOURNAL_STREAM", v, 1);
        CHECK(!log_stderr_is_journal(), "JOURNAL_STREAM=%s is malformed", v);
        (void) setenv("JOURNAL_STREAM", "journal", 1);
        CHECK(!log_stderr_is_journal(), "%s", "JOURNAL_STREAM=journal is malformed");

        (void) unsetenv("JOURNAL_STREAM");
        (void) dup2(saved, STDERR_FILENO);
        (void) close(saved);
        (void) close(fd);
        (void) unlink(path);
}

/* Not the journal: plain lines on stderr, a word for errors and warnings, the mapping named in
 * the text only, nothing below the level; errno is left alone and -error returned. */
static void test_log_plain(void) {
        char path[] = "/tmp/test-util-log.XXXXXX", buf[512] = "";
        int fd, saved, r;
        ssize_t n;

        fd = mkstemp(path);
        CHECK(fd >= 0, "mkstemp: %s", strerror(errno));
        if (fd < 0)
                return;
        saved = dup(STDERR_FILENO);
        CHECK(saved >= 0 && dup2(fd, STDERR_FILENO) >= 0, "%s", strerror(errno));
        (void) unsetenv("JOURNAL_STREAM");

        errno = ENOENT;
        r = log_error_errno(-EIO, "Failed to read '%s': %m", "x");
        CHECK_INT_EQ(r, -EIO);
        CHECK_INT_EQ(errno, ENOENT);
        r = log_object_full_errno(LOG_INFO, 0, "vm-1", "/dev/loop7", "Mapping '%s': %s is active.", "vm-1",
                                  "/dev/loop7");
        CHECK_INT_EQ(r, 0);
        log_warning("careful");
        log_debug("not shown at level info");
        CHECK_INT_EQ(errno, ENOENT);

        (void) fflush(stderr);
        (void) dup2(saved, STDERR_FILENO);
        (void) close(saved);
        n = pread(fd, buf, sizeof(buf) - 1, 0);
        CHECK(n >= 0, "pread: %s", strerror(errno));
        CHECK_STR_EQ(buf, "error: Failed to read 'x': Input/output error\n"
                          "Mapping 'vm-1': /dev/loop7 is active.\n"
                          "warning: careful\n");
        (void) close(fd);
        (void) unlink(path);
}

static void test_utf8(void) {
        char bad[] = "a\xff""b\xc3", cut[] = "\xe2\x82", ok[] = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";

        CHECK(utf8_is_valid(""), "empty string");
        CHECK(utf8_is_valid("plain /path"), "ASCII");
        CHECK(utf8_is_valid(ok), "2-, 3- and 4-byte characters");
        CHECK(!utf8_is_valid("\xff"), "0xff");
        CHECK(!utf8_is_valid("\xc0\xaf"), "overlong '/'");
        CHECK(!utf8_is_valid("\xe0\x80\xaf"), "overlong 3-byte '/'");
        CHECK(!utf8_is_valid("\xed\xa0\x80"), "surrogate U+D800");
        CHECK(!utf8_is_valid("\xf4\x90\x80\x80"), "beyond U+10FFFF");
        CHECK(!utf8_is_valid(cut), "a character cut short");

        CHECK_STR_EQ(utf8_sanitize(bad), "a?b?");
        CHECK_STR_EQ(utf8_sanitize(cut), "??");
        CHECK_STR_EQ(utf8_sanitize(ok), "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");

        CHECK_INT_EQ((int) utf8_prefix_len("abcdef", 4), 4);
        CHECK_INT_EQ((int) utf8_prefix_len("abc", 10), 3);
        /* "é" is 2 bytes: a prefix of 4 bytes of "caf\xc3\xa9" stops before it. */
        CHECK_INT_EQ((int) utf8_prefix_len("caf\xc3\xa9", 4), 3);
        CHECK_INT_EQ((int) utf8_prefix_len("caf\xc3\xa9", 5), 5);
        CHECK_INT_EQ((int) utf8_prefix_len("\xf0\x9f\x98\x80x", 3), 0);
}

int main(void) {
        test_mapping_name_is_valid();
        test_utf8();
        test_parse_size();
        test_format_size();
        test_uri_to_path();
        test_loop_device_parse_number();
        test_safe_atou64();
        test_startswith();
        test_read_files();
        test_block_stat_parse();
        test_log_stderr_is_journal();
        test_log_plain();

        return test_summary("test-util");
}
