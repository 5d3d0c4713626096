/* Map and Unmap options: validation of a{sv} entries, independent of the bus. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus-names.h"
#include "macro.h"
#include "options.h"
#include "util.h"

/* export-name is an NBD string; bound its length like the NBD protocol does. */
#define EXPORT_NAME_MAX 4096
/* PATH_MAX, without its NUL. */
#define MOUNT_POINT_MAX 4095

static const struct {
        const char *key;
        char type;
} map_option_types[] = {
        { FUSELOOP_OPT_SIZE,           't' },
        { FUSELOOP_OPT_OFFSET,         't' },
        { FUSELOOP_OPT_PARTITION_SCAN, 'b' },
        { FUSELOOP_OPT_SECTOR_SIZE,    'u' },
        { FUSELOOP_OPT_DIRECT_IO,      'b' },
        { FUSELOOP_OPT_PROTOCOL,       's' },
        { FUSELOOP_OPT_EXPORT_NAME,    's' },
        { FUSELOOP_OPT_BIND_TO_CALLER, 'b' },
        { FUSELOOP_OPT_TIMEOUT,        'u' },
        { FUSELOOP_OPT_UNTRUSTED,      'b' },
        { FUSELOOP_OPT_MOUNT_POINT,    's' },
        { FUSELOOP_OPT_PASSTHROUGH,    'b' },
};

char map_option_type(const char *key) {
        for (size_t i = 0; i < ELEMENTSOF(map_option_types); i++)
                if (strcmp(key, map_option_types[i].key) == 0)
                        return map_option_types[i].type;
        return 0;
}

static int check_type(const char *key, char want, const char *type, char *errbuf, size_t errlen) {
        if (!type || type[0] != want || type[1] != '\0') {
                (void) snprintf(errbuf, errlen, "option '%s' must be of type '%c', not '%s'",
                                key, want, type ? type : "");
                return -EINVAL;
        }
        return 0;
}

static int set_string(char **field, const char *key, const char *value, size_t max, char *errbuf, size_t errlen) {
        char *s;

        if (strlen(value) > max) {
                (void) snprintf(errbuf, errlen, "option '%s' is longer than %zu bytes", key, max);
                return -EINVAL;
        }
        s = strdup(value);
        if (!s)
                return -ENOMEM;
        free(*field);
        *field = s;
        return 0;
}

int map_options_set(MapOptions *o, const char *key, const char *type, const OptionValue *v,
                    char *errbuf, size_t errlen) {
        char want = map_option_type(key);
        int r;

        if (want == 0) {
                (void) snprintf(errbuf, errlen, "unknown option '%.64s'", key);
                return -EINVAL;
        }
        r = check_type(key, want, type, errbuf, errlen);
        if (r < 0)
                return r;

        if (strcmp(key, FUSELOOP_OPT_SIZE) == 0) {
                if (v->t == 0) {
                        (void) snprintf(errbuf, errlen, "option 'size' must not be zero");
                        return -EINVAL;
                }
                o->size = v->t;
                o->size_set = true;
        } else if (strcmp(key, FUSELOOP_OPT_OFFSET) == 0)
                o->offset = v->t;
        else if (strcmp(key, FUSELOOP_OPT_PARTITION_SCAN) == 0)
                o->partition_scan = v->b;
        else if (strcmp(key, FUSELOOP_OPT_DIRECT_IO) == 0) {
                o->direct_io = v->b;
                o->direct_io_set = true;
        }
        else if (strcmp(key, FUSELOOP_OPT_BIND_TO_CALLER) == 0)
                o->bind_to_caller = v->b;
        else if (strcmp(key, FUSELOOP_OPT_UNTRUSTED) == 0)
                o->untrusted = v->b;
        else if (strcmp(key, FUSELOOP_OPT_PASSTHROUGH) == 0)
                o->passthrough = v->b;
        else if (strcmp(key, FUSELOOP_OPT_MOUNT_POINT) == 0) {
                /* Only recorded, never used by us; but clients unmount what it names, so it must
                 * name one place plainly. */
                if (v->s[0] != '/') {
                        (void) snprintf(errbuf, errlen, "option 'mount-point' must be an absolute path, not '%.64s'",
                                        v->s);
                        return -EINVAL;
                }
                for (const char *p = v->s; *p; p++)
                        if ((unsigned char) *p < ' ' || *p == 0x7f) {
                                (void) snprintf(errbuf, errlen, "option 'mount-point' must not contain control "
                                                "characters");
                                return -EINVAL;
                        }
                return set_string(&o->mount_point, key, v->s, MOUNT_POINT_MAX, errbuf, errlen);
        }
        else if (strcmp(key, FUSELOOP_OPT_SECTOR_SIZE) == 0) {
                if (v->u != 512 && v->u != 1024 && v->u != 2048 && v->u != 4096) {
                        (void) snprintf(errbuf, errlen,
                                        "option 'sector-size' must be 512, 1024, 2048 or 4096, not %" PRIu32, v->u);
                        return -EINVAL;
                }
                o->sector_size = v->u;
        } else if (strcmp(key, FUSELOOP_OPT_TIMEOUT) == 0) {
                if (v->u > FUSELOOP_TIMEOUT_MAX_SEC) {
                        (void) snprintf(errbuf, errlen,
                                        "option 'timeout' must be at most %u seconds (0: none), not %" PRIu32,
                                        FUSELOOP_TIMEOUT_MAX_SEC, v->u);
                        return -EINVAL;
                }
                o->timeout_sec = v->u;
        } else if (strcmp(key, FUSELOOP_OPT_PROTOCOL) == 0) {
                if (strcmp(v->s, "raw") != 0 && strcmp(v->s, "nbd") != 0) {
                        (void) snprintf(errbuf, errlen, "unsupported protocol '%.64s' (supported: raw, nbd)", v->s);
                        return -EINVAL;
                }
                return set_string(&o->protocol, key, v->s, 16, errbuf, errlen);
        } else if (strcmp(key, FUSELOOP_OPT_EXPORT_NAME) == 0)
                return set_string(&o->export_name, key, v->s, EXPORT_NAME_MAX, errbuf, errlen);

        return 0;
}

int map_options_resolve(MapOptions *o, uint64_t source_size, char *errbuf, size_t errlen) {
        char a[FORMAT_SIZE_MAX], b[FORMAT_SIZE_MAX];

        if (o->offset >= source_size) {
                (void) snprintf(errbuf, errlen, "offset %" PRIu64 " is beyond the end of the source (%s, %" PRIu64 " bytes)",
                                o->offset, format_size(a, sizeof(a), source_size), source_size);
                return -EINVAL;
        }
        if (o->offset % 512 != 0) {
                (void) snprintf(errbuf, errlen, "offset %" PRIu64 " is not a multiple of 512", o->offset);
                return -EINVAL;
        }

        if (!o->size_set)
                o->size = source_size - o->offset;
        else if (o->size > source_size - o->offset) {
                (void) snprintf(errbuf, errlen,
                                "size %" PRIu64 " at offset %" PRIu64 " goes beyond the end of the source (%s)",
                                o->size, o->offset, format_size(b, sizeof(b), source_size));
                return -EINVAL;
        }

        if (o->size < o->sector_size) {
                (void) snprintf(errbuf, errlen, "the mapping (%" PRIu64 " bytes) is smaller than one sector (%" PRIu32 " bytes)",
                                o->size, o->sector_size);
                return -EINVAL;
        }
        return 0;
}

void map_options_done(MapOptions *o) {
        o->protocol = mfree(o->protocol);
        o->export_name = mfree(o->export_name);
        o->mount_point = mfree(o->mount_point);
}

int unmap_options_set(UnmapOptions *o, const char *key, const char *type, const OptionValue *v,
                      char *errbuf, size_t errlen) {
        int r;

        if (strcmp(key, FUSELOOP_OPT_LAZY) != 0) {
                (void) snprintf(errbuf, errlen, "unknown option '%.64s'", key);
                return -EINVAL;
        }
        r = check_type(key, 'b', type, errbuf, errlen);
        if (r < 0)
                return r;
        o->lazy = v->b;
        return 0;
}
