/* Fuzz target for the Map and Unmap option dictionaries (src/daemon/options.c): the input is a
 * small program of a{sv} entries as bus_read_options() hands them over (a key, known or random;
 * the variant's D-Bus type, right, wrong or odd; a value of that type), each applied with
 * map_options_set() or unmap_options_set(), then map_options_resolve() against a source size.
 *
 * Program: one byte, the number of entries (modulo OPS_MAX + 1); per entry one byte whose value
 * modulo 4 is 3 for Unmap, one byte for the size of the error buffer (1 + value), the key and the
 * type (a byte below 0xc0 picks from a list, anything else is followed by a length byte and that
 * many bytes), and the value (t and u: a byte picking from a list, or 0xff or another high byte
 * followed by the number, little-endian; b: one byte; s: like a key, with a two-byte length);
 * then a byte choosing how the source size is made and what that needs (see check_resolve()).
 * make-corpus.py writes seeds in this form.
 *
 * Checked: only a known key with exactly its type is taken; a refused entry changes nothing and
 * explains itself in the error buffer (whatever its size); a taken entry sets its own field and
 * no other; a resolved mapping lies inside the source, starts at a multiple of 512 and holds at
 * least one sector, and whatever breaks one of those rules is refused. */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bus-names.h"
#include "fuzz.h"
#include "macro.h"
#include "options.h"

#define OPS_MAX 64
/* Longer than any option may be (export-name: 4096 bytes). */
#define STRING_MAX 5000
#define EXPORT_NAME_MAX 4096

/* Known keys first (by index), then near misses. "timeout" may or may not be a Map option. */
static const char *const keys[] = {
        FUSELOOP_OPT_SIZE, FUSELOOP_OPT_OFFSET, FUSELOOP_OPT_PARTITION_SCAN, FUSELOOP_OPT_SECTOR_SIZE,
        FUSELOOP_OPT_DIRECT_IO, FUSELOOP_OPT_PROTOCOL, FUSELOOP_OPT_EXPORT_NAME,
        FUSELOOP_OPT_BIND_TO_CALLER, FUSELOOP_OPT_LAZY, "timeout", FUSELOOP_OPT_PASSTHROUGH,
        "", "Size", "size ", " offset", "offset\n", "sector_size", "partition-scan\x01", "lazy=",
};

/* Variant signatures: the ones options use, other basic types, and containers. */
static const char *const types[] = {
        "t", "u", "b", "s", "y", "n", "q", "i", "x", "d", "o", "g", "h",
        "v", "as", "ay", "a{sv}", "(tt)", "tt", "bb", "", "T", "S",
};

static const uint64_t interesting_t[] = {
        0, 1, 511, 512, 513, 1024, 4096, UINT64_C(1) << 20, UINT64_C(1) << 32, UINT64_C(1) << 63,
        UINT64_MAX - 511, UINT64_MAX - 1, UINT64_MAX,
};

static const uint32_t interesting_u[] = {
        0, 1, 256, 511, 512, 1024, 2048, 3000, 4096, 8192, 65536, UINT32_MAX,
};

static const char *const interesting_s[] = {
        "raw", "nbd", "", "RAW", "raw ", "raw\n",
};

static uint64_t pick_t(FuzzInput *in) {
        uint8_t c = fuzz_u8(in);

        if (c < 2 * ELEMENTSOF(interesting_t))
                return interesting_t[c % ELEMENTSOF(interesting_t)];
        return fuzz_u64(in);
}

static uint32_t pick_u(FuzzInput *in) {
        uint8_t c = fuzz_u8(in);

        if (c < 2 * ELEMENTSOF(interesting_u))
                return interesting_u[c % ELEMENTSOF(interesting_u)];
        return fuzz_u32(in);
}

/* A malloc()ed string: a key from the list, or random bytes. */
static char *pick_string(FuzzInput *in, const char *const *list, size_t n, size_t max) {
        uint8_t c = fuzz_u8(in);

        if (c < 0xc0)
                return strdup(list[c % n]);
        return fuzz_string(in, max);
}

/* The fields this target knows; a MapOptions may have more. */
typedef struct Snapshot {
        uint64_t offset, size;
        bool size_set;
        uint32_t sector_size;
        bool partition_scan, direct_io, direct_io_set, bind_to_caller, passthrough;
        char *protocol, *export_name;
} Snapshot;

static void snapshot_take(Snapshot *s, const MapOptions *o) {
        *s = (Snapshot) {
                .offset = o->offset,
                .size = o->size,
                .size_set = o->size_set,
                .sector_size = o->sector_size,
                .partition_scan = o->partition_scan,
                .direct_io = o->direct_io,
                .direct_io_set = o->direct_io_set,
                .bind_to_caller = o->bind_to_caller,
                .passthrough = o->passthrough,
                .protocol = o->protocol ? strdup(o->protocol) : NULL,
                .export_name = o->export_name ? strdup(o->export_name) : NULL,
        };
}

static void snapshot_done(Snapshot *s) {
        free(s->protocol);
        free(s->export_name);
}

static bool str_eq(const char *a, const char *b) {
        return a && b ? strcmp(a, b) == 0 : a == b;
}

/* Every field but the one named by key (NULL: every field) is as in s. */
static void check_unchanged(const Snapshot *s, const MapOptions *o, const char *key, const char *what) {
#define SAME(field, k) FUZZ_CHECK((key && strcmp(key, k) == 0) || s->field == o->field,                \
                                  "%s changed '%s'", what, #field)
        SAME(offset, FUSELOOP_OPT_OFFSET);
        SAME(size, FUSELOOP_OPT_SIZE);
        SAME(size_set, FUSELOOP_OPT_SIZE);
        SAME(sector_size, FUSELOOP_OPT_SECTOR_SIZE);
        SAME(partition_scan, FUSELOOP_OPT_PARTITION_SCAN);
        SAME(direct_io, FUSELOOP_OPT_DIRECT_IO);
        SAME(direct_io_set, FUSELOOP_OPT_DIRECT_IO);
        SAME(bind_to_caller, FUSELOOP_OPT_BIND_TO_CALLER);
        SAME(passthrough, FUSELOOP_OPT_PASSTHROUGH);
#undef SAME
        FUZZ_CHECK((key && strcmp(key, FUSELOOP_OPT_PROTOCOL) == 0) || str_eq(s->protocol, o->protocol),
                   "%s changed 'protocol'", what);
        FUZZ_CHECK((key && strcmp(key, FUSELOOP_OPT_EXPORT_NAME) == 0) ||
                   str_eq(s->export_name, o->export_name), "%s changed 'export-name'", what);
}

/* A refusal must say why, within errlen bytes. */
static void check_errbuf(const char *errbuf, size_t errlen, const char *key) {
        FUZZ_CHECK(memchr(errbuf, '\0', errlen), "error message for '%.64s' is not terminated", key);
        FUZZ_CHECK(errlen == 1 || errbuf[0] != '\0', "empty error message for '%.64s'", key);
}

static bool sector_size_ok(uint32_t v) {
        return v == 512 || v == 1024 || v == 2048 || v == 4096;
}

/* What map_options_set() must have done with a known key and its own type. */
static void check_taken(const MapOptions *o, const char *key, const OptionValue *v, int r) {
        if (strcmp(key, FUSELOOP_OPT_SIZE) == 0) {
                FUZZ_CHECK((r == 0) == (v->t != 0), "size %" PRIu64 ": %d", v->t, r);
                FUZZ_CHECK(r < 0 || (o->size == v->t && o->size_set), "size %" PRIu64 " not taken", v->t);
        } else if (strcmp(key, FUSELOOP_OPT_OFFSET) == 0)
                FUZZ_CHECK(r == 0 && o->offset == v->t, "offset %" PRIu64 ": %d", v->t, r);
        else if (strcmp(key, FUSELOOP_OPT_PARTITION_SCAN) == 0)
                FUZZ_CHECK(r == 0 && o->partition_scan == !!v->b, "partition-scan %d: %d", v->b, r);
        else if (strcmp(key, FUSELOOP_OPT_DIRECT_IO) == 0)
                FUZZ_CHECK(r == 0 && o->direct_io == !!v->b && o->direct_io_set, "direct-io %d: %d", v->b, r);
        else if (strcmp(key, FUSELOOP_OPT_PASSTHROUGH) == 0)
                FUZZ_CHECK(r == 0 && o->passthrough == !!v->b, "passthrough %d: %d", v->b, r);
        else if (strcmp(key, FUSELOOP_OPT_BIND_TO_CALLER) == 0)
                FUZZ_CHECK(r == 0 && o->bind_to_caller == !!v->b, "bind-to-caller %d: %d", v->b, r);
        else if (strcmp(key, FUSELOOP_OPT_SECTOR_SIZE) == 0) {
                FUZZ_CHECK((r == 0) == sector_size_ok(v->u), "sector-size %" PRIu32 ": %d", v->u, r);
                FUZZ_CHECK(r < 0 || o->sector_size == v->u, "sector-size %" PRIu32 " not taken", v->u);
        } else if (strcmp(key, FUSELOOP_OPT_PROTOCOL) == 0) {
                bool known = strcmp(v->s, "raw") == 0 || strcmp(v->s, "nbd") == 0;

                FUZZ_CHECK((r == 0) == known, "protocol '%.64s': %d", v->s, r);
                FUZZ_CHECK(r < 0 || str_eq(o->protocol, v->s), "protocol '%.64s' not taken", v->s);
        } else if (strcmp(key, FUSELOOP_OPT_EXPORT_NAME) == 0) {
                FUZZ_CHECK((r == 0) == (strlen(v->s) <= EXPORT_NAME_MAX), "export-name of %zu bytes: %d",
                           strlen(v->s), r);
                FUZZ_CHECK(r < 0 || (o->export_name != v->s && str_eq(o->export_name, v->s)),
                           "export-name '%.64s' not taken as a copy", v->s);
        }
}

/* One a{sv} entry. Returns false when out of memory. */
static bool step(FuzzInput *in, MapOptions *o, UnmapOptions *u) {
        uint8_t op = fuzz_u8(in);
        size_t errlen = 1 + fuzz_u8(in) % 256;
        char *key, *type, *s = NULL, *errbuf;
        OptionValue v = {};
        Snapshot before;
        bool ok = false;
        int r;

        key = pick_string(in, keys, ELEMENTSOF(keys), 100);
        type = pick_string(in, types, ELEMENTSOF(types), 8);
        errbuf = malloc(errlen);  /* exactly errlen: writing past it is a sanitizer report */
        if (!key || !type || !errbuf)
                goto finish;

        /* The value as bus_read_options() reads it: only t, u, b and s are read, anything else
         * is skipped and leaves the value zeroed. */
        if (strcmp(type, "t") == 0)
                v.t = pick_t(in);
        else if (strcmp(type, "u") == 0)
                v.u = pick_u(in);
        else if (strcmp(type, "b") == 0)
                v.b = fuzz_u8(in) & 1;
        else if (strcmp(type, "s") == 0) {
                s = pick_string(in, interesting_s, ELEMENTSOF(interesting_s), STRING_MAX);
                if (!s)
                        goto finish;
                v.s = s;
        }
        memset(errbuf, 'X', errlen);

        if (op % 4 == 3) {
                UnmapOptions was = *u;
                bool known = strcmp(key, FUSELOOP_OPT_LAZY) == 0 && strcmp(type, "b") == 0;

                r = unmap_options_set(u, key, type, &v, errbuf, errlen);
                FUZZ_CHECK(r == (known ? 0 : -EINVAL), "unmap option '%.64s' of type '%s': %d", key, type, r);
                if (r < 0) {
                        FUZZ_CHECK(u->lazy == was.lazy, "refused unmap option '%.64s' changed 'lazy'", key);
                        check_errbuf(errbuf, errlen, key);
                } else
                        FUZZ_CHECK(u->lazy == !!v.b, "lazy %d not taken", v.b);
                ok = true;
                goto finish;
        }

        snapshot_take(&before, o);
        r = map_options_set(o, key, type, &v, errbuf, errlen);
        if (r == -ENOMEM) {
                snapshot_done(&before);
                goto finish;
        }
        FUZZ_CHECK(r == 0 || r == -EINVAL, "map option '%.64s': %d", key, r);
        if (map_option_type(key) == 0 || strlen(type) != 1 || type[0] != map_option_type(key))
                FUZZ_CHECK(r == -EINVAL, "map option '%.64s' of type '%s' taken (its type is '%c')",
                           key, type, map_option_type(key) ?: '-');
        else
                check_taken(o, key, &v, r);
        if (r < 0) {
                check_unchanged(&before, o, NULL, "a refused option");
                check_errbuf(errbuf, errlen, key);
        } else
                check_unchanged(&before, o, key, "an option");
        snapshot_done(&before);
        ok = true;

finish:
        free(errbuf);
        free(s);
        free(type);
        free(key);
        return ok;
}

static void check_resolve(FuzzInput *in, MapOptions *o) {
        uint8_t c = fuzz_u8(in);
        uint64_t source_size;
        bool bad;
        Snapshot before;
        char errbuf[256];
        int r;

        /* Sizes near what the options say are where the edges are. */
        switch (c % 4) {
        case 0:
                source_size = pick_t(in);
                break;
        case 1:
                source_size = o->offset + (fuzz_u8(in) % 3) * 512 - 512 + o->sector_size;
                break;
        case 2:
                source_size = o->offset + o->size + fuzz_u8(in) % 3 - 1;
                break;
        default:
                source_size = fuzz_u64(in);
                break;
        }

        /* The rules a mapping must follow; breaking any one of them must be refused. */
        bad = o->offset >= source_size || o->offset % 512 != 0 ||
              (o->size_set && o->size > source_size - o->offset) ||
              (o->size_set ? o->size : source_size - o->offset) < o->sector_size;

        snapshot_take(&before, o);
        r = map_options_resolve(o, source_size, errbuf, sizeof(errbuf));
        FUZZ_CHECK(r == 0 || r == -EINVAL, "map_options_resolve(): %d", r);
        if (bad)
                FUZZ_CHECK(r == -EINVAL, "offset %" PRIu64 ", size %" PRIu64 "%s, sector size %" PRIu32
                           " accepted for a source of %" PRIu64 " bytes", before.offset, before.size,
                           before.size_set ? "" : " (unset)", before.sector_size, source_size);
        if (r < 0) {
                check_errbuf(errbuf, sizeof(errbuf), "resolve");
                snapshot_done(&before);
                return;
        }

        FUZZ_CHECK(o->offset < source_size && o->offset % 512 == 0, "offset %" PRIu64, o->offset);
        FUZZ_CHECK(o->size > 0 && o->size <= source_size - o->offset,
                   "offset %" PRIu64 " + size %" PRIu64 " beyond %" PRIu64, o->offset, o->size, source_size);
        FUZZ_CHECK(o->size >= o->sector_size && sector_size_ok(o->sector_size),
                   "size %" PRIu64 ", sector size %" PRIu32, o->size, o->sector_size);
        FUZZ_CHECK(before.size_set ? o->size == before.size : o->size == source_size - o->offset,
                   "size %" PRIu64 " (was %" PRIu64 "%s) for offset %" PRIu64 " in %" PRIu64,
                   o->size, before.size, before.size_set ? "" : ", unset", o->offset, source_size);
        check_unchanged(&before, o, FUSELOOP_OPT_SIZE, "map_options_resolve()");
        snapshot_done(&before);

        /* Resolving again changes nothing. */
        snapshot_take(&before, o);
        r = map_options_resolve(o, source_size, errbuf, sizeof(errbuf));
        FUZZ_CHECK(r == 0, "resolving again: %d", r);
        check_unchanged(&before, o, NULL, "resolving again");
        snapshot_done(&before);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        FuzzInput in = { data, size };
        MapOptions o = MAP_OPTIONS_INIT;
        UnmapOptions u = {};

        /* The number of entries, the entries, then the source size. */
        for (unsigned i = 0, n = fuzz_u8(&in) % (OPS_MAX + 1); i < n && !fuzz_empty(&in); i++)
                if (!step(&in, &o, &u))
                        goto finish;
        check_resolve(&in, &o);

finish:
        map_options_done(&o);
        FUZZ_CHECK(!o.protocol && !o.export_name, "%s", "map_options_done() left strings behind");
        return 0;
}
