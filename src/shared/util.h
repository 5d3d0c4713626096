/* Pure helpers shared by daemon, client and tests: names, sizes, small string and fd utilities. */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* True if s is a valid mapping name: 1-FUSELOOP_NAME_MAX bytes of [A-Za-z0-9._:@+-], not
 * starting with '.'. */
bool mapping_name_is_valid(const char *s);

/* Parses a byte count: decimal digits with an optional K, M, G or T suffix (powers of 1024,
 * optionally followed by "iB" or "B"). Returns 0 and writes *ret_bytes, -EINVAL for malformed
 * input, -ERANGE on overflow. */
int parse_size(const char *s, uint64_t *ret_bytes);

/* Formats bytes with a binary suffix ("512", "1.5K", "100M", "2.0G") into buf (at least
 * FORMAT_SIZE_MAX bytes); returns buf. */
#define FORMAT_SIZE_MAX 16
char *format_size(char *buf, size_t len, uint64_t bytes);

/* Turns a MapURI source into an absolute path: "file:///p%20q" is percent-decoded (every %XX
 * but %00; the checks below apply to the decoded path), anything else without "://" is taken as
 * it is. The input must be absolute and shorter than PATH_MAX; the path must be valid UTF-8 and
 * have no empty, "." or ".." component (so "/" itself and a trailing '/' are refused). Returns 0
 * and a malloc()ed path in *ret, -EINVAL for a path refused by these rules, -EPROTONOSUPPORT for
 * any other scheme, or -ENOMEM. */
int uri_to_path(const char *uri, char **ret);

/* Parses "loopN" or "/dev/loopN" and returns N (>= 0), or -EINVAL. */
int loop_device_parse_number(const char *s);

/* Reads a small sysfs-style file into a NUL-terminated string with the trailing newline removed.
 * Returns 0 and a malloc()ed string, or -errno. */
int read_one_line_file(const char *path, char **ret);

/* Reads a decimal unsigned number from a sysfs-style file. */
int read_u64_file(const char *path, uint64_t *ret);

/* The kernel's I/O counters of a block device (Documentation/block/stat.rst); fields the kernel
 * does not have (older kernels have fewer) are 0. */
typedef struct BlockStat {
        uint64_t read_ios, read_merges, read_sectors, read_ticks_ms;
        uint64_t write_ios, write_merges, write_sectors, write_ticks_ms;
        uint64_t in_flight, io_ticks_ms, time_in_queue_ms;
} BlockStat;

/* Parses the text of /sys/block/<dev>/stat: at least the first 11 decimal fields. Returns 0 or
 * -EINVAL. */
int block_stat_parse(const char *text, BlockStat *ret);

/* Reads /sys/class/block/loop<nr>/stat. Returns 0, or -errno (-ENOENT: no such device). */
int block_stat_read_loop(int nr, BlockStat *ret);

/* Parses a decimal unsigned 64-bit number, the whole string. */
int safe_atou64(const char *s, uint64_t *ret);

/* Formats into a malloc()ed string; NULL when out of memory. */
char *vasprintf_or_null(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

/* True if s starts with prefix; returns a pointer past it or NULL. */
const char *startswith(const char *s, const char *prefix);

/* Whether s is valid UTF-8 (what D-Bus requires of every string): no overlong forms, no
 * surrogates, nothing beyond U+10FFFF. */
bool utf8_is_valid(const char *s);

/* Replaces every byte of s that is not part of valid UTF-8 with '?', in place; returns s. */
char *utf8_sanitize(char *s);

/* The length in bytes of the longest prefix of s (valid UTF-8) that has at most max bytes and
 * does not cut a character in two: for quoting the start of a long input. */
size_t utf8_prefix_len(const char *s, size_t max);

/* The value of the hexadecimal digit c (either case), or -1. */
int unhexchar(char c);
