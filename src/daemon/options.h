/* Map and Unmap options: validation of a{sv} entries, independent of the bus. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct MapOptions {
        uint64_t offset;
        uint64_t size;           /* 0 until resolved: the source size minus offset */
        bool size_set;
        uint32_t sector_size;
        bool partition_scan;
        bool direct_io;
        bool direct_io_set;      /* else the mapping picks: on for reads through the daemon */
        bool bind_to_caller;
        uint32_t timeout_sec;    /* a read waits at most this long for the source; 0: no limit */
        bool untrusted;          /* udev marks the device UDISKS_IGNORE=1 */
        bool passthrough;        /* let the kernel read a file source itself where it can */
        char *mount_point;       /* recorded for clients (fuseloopctl map --mount); NULL: none */
        char *protocol;          /* NULL: "raw" */
        char *export_name;
} MapOptions;

#define MAP_OPTIONS_INIT ((MapOptions) { .sector_size = 512, .passthrough = true })

/* A value from a variant: which member is valid depends on the D-Bus type character. */
typedef union OptionValue {
        uint64_t t;
        uint32_t u;
        int b;
        const char *s;
} OptionValue;

/* Returns the D-Bus type a Map option needs, or 0 for an unknown option. */
char map_option_type(const char *key);

/* Applies one option. type is the D-Bus signature of the variant's content. Returns 0, or
 * -EINVAL with a readable reason in errbuf (unknown option, wrong type, bad value). */
int map_options_set(MapOptions *o, const char *key, const char *type, const OptionValue *v,
                    char *errbuf, size_t errlen);

/* Checks offset and size against the source size and fills in the default size. Returns 0 or
 * -EINVAL with a reason in errbuf. */
int map_options_resolve(MapOptions *o, uint64_t source_size, char *errbuf, size_t errlen);

void map_options_done(MapOptions *o);

/* Unmap options. */
typedef struct UnmapOptions {
        bool lazy;
} UnmapOptions;

int unmap_options_set(UnmapOptions *o, const char *key, const char *type, const OptionValue *v,
                      char *errbuf, size_t errlen);
