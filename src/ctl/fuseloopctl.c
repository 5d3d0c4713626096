/* fuseloopctl: the command-line client that maps, unmaps, lists, inspects and follows fuseloopd
 * mappings through the org.proxmox.FuseLoop1 system bus API; it holds no state of its own. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-bus.h>

#include "bus-names.h"
#include "ctl.h"
#include "macro.h"
#include "util.h"

/* Long-only options; each value is also a bit in arg_given so verbs can reject foreign options. */
enum {
        ARG_VERSION = 0x100,
        ARG_PARTSCAN,
        ARG_OFFSET,
        ARG_SIZE,
        ARG_SECTOR_SIZE,
        ARG_DIRECT_IO,
        ARG_BIND,
        ARG_TIMEOUT,
        ARG_UNTRUSTED,
        ARG_MOUNT,
        ARG_PARTITION,
        ARG_LAZY,
        ARG_NO_LEGEND,
        ARG_JSON,
        ARG_BYTES,
        ARG_REMOVED,
        ARG_NO_ASK_PASSWORD,
        ARG_PASSTHROUGH,
};
#define ARG_BIT(a) (1u << ((a) - ARG_VERSION))
/* Options every verb accepts. */
#define ARG_GLOBAL ARG_BIT(ARG_NO_ASK_PASSWORD)

static const struct option options[] = {
        { "help",            no_argument,       NULL, 'h'                 },
        { "version",         no_argument,       NULL, ARG_VERSION         },
        { "partscan",        no_argument,       NULL, ARG_PARTSCAN        },
        { "offset",          required_argument, NULL, ARG_OFFSET          },
        { "size",            required_argument, NULL, ARG_SIZE            },
        { "sector-size",     required_argument, NULL, ARG_SECTOR_SIZE     },
        { "direct-io",       required_argument, NULL, ARG_DIRECT_IO       },
        { "bind",            no_argument,       NULL, ARG_BIND            },
        { "timeout",         required_argument, NULL, ARG_TIMEOUT         },
        { "untrusted",       no_argument,       NULL, ARG_UNTRUSTED       },
        { "mount",           required_argument, NULL, ARG_MOUNT           },
        { "partition",       required_argument, NULL, ARG_PARTITION       },
        { "lazy",            no_argument,       NULL, ARG_LAZY            },
        { "no-legend",       no_argument,       NULL, ARG_NO_LEGEND       },
        { "json",            optional_argument, NULL, ARG_JSON            },
        { "bytes",           no_argument,       NULL, ARG_BYTES           },
        { "removed",         no_argument,       NULL, ARG_REMOVED         },
        { "no-ask-password", no_argument,       NULL, ARG_NO_ASK_PASSWORD },
        { "passthrough",     required_argument, NULL, ARG_PASSTHROUGH     },
        {}
};

static unsigned arg_given;
static uint64_t arg_offset;
static uint64_t arg_size;
static uint32_t arg_sector_size;
static bool arg_direct_io;
static bool arg_passthrough = true;
static uint32_t arg_timeout;
static char *arg_mount;
static unsigned arg_partition;
bool arg_ask_password = true;
JsonMode arg_json = JSON_OFF;
bool arg_wait_removed;
uint64_t arg_wait_timeout_usec = UINT64_MAX;

/* Formats bytes for people: "16M", or the exact count with --bytes. */
static const char *format_bytes(char *buf, size_t len, uint64_t bytes) {
        if (arg_given & ARG_BIT(ARG_BYTES)) {
                (void) snprintf(buf, len, "%" PRIu64, bytes);
                return buf;
        }
        return format_size(buf, len, bytes);
}

/* Formats a duration in microseconds: "850us", "1.2ms", "3.40s", "5min 3s", "2h 10min",
 * "3d 4h". */
static const char *format_usec(char *buf, size_t len, uint64_t usec) {
        uint64_t s = usec / 1000000;

        if (usec < 1000)
                (void) snprintf(buf, len, "%" PRIu64 "us", usec);
        else if (usec < 1000000)
                (void) snprintf(buf, len, "%.1fms", (double) usec / 1000.0);
        else if (s < 60)
                (void) snprintf(buf, len, "%.2fs", (double) usec / 1000000.0);
        else if (s < 3600)
                (void) snprintf(buf, len, "%" PRIu64 "min %" PRIu64 "s", s / 60, s % 60);
        else if (s < 86400)
                (void) snprintf(buf, len, "%" PRIu64 "h %" PRIu64 "min", s / 3600, s % 3600 / 60);
        else
                (void) snprintf(buf, len, "%" PRIu64 "d %" PRIu64 "h", s / 86400, s % 86400 / 3600);
        return buf;
}

static uint64_t now_usec(clockid_t clock) {
        struct timespec ts;

        if (clock_gettime(clock, &ts) < 0)
                return 0;
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

/* Appends the map options the user gave, and only those, as the a{sv} argument of Map. */
static int append_map_options(sd_bus_message *m, const char *nbd_export) {
        int r;

        r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r < 0)
                return r;

        if (nbd_export) {
                r = sd_bus_message_append(m, "{sv}{sv}", FUSELOOP_OPT_PROTOCOL, "s", "nbd", FUSELOOP_OPT_EXPORT_NAME,
                                          "s", nbd_export);
                if (r < 0)
                        return r;
        }

        if (arg_given & ARG_BIT(ARG_OFFSET)) {
                r = sd_bus_message_append(m, "{sv}", FUSELOOP_OPT_OFFSET, "t", arg_offset);
                if (r < 0)
                        return r;
        }
        if (arg_given & ARG_BIT(ARG_SIZE)) {
                r = sd_bus_message_append(m, "{sv}", FUSELOOP_OPT_SIZE, "t", arg_size);
                if (r < 0)
                        return r;
        }
        /* --mount picks a partition, so it needs them. */
        if (arg_given & (ARG_BIT(ARG_PARTSCAN) | ARG_BIT(ARG_MOUNT))) {
                r = sd_bus_message_append(m, "{sv}", FUSELOOP_OPT_PARTITION_SCAN, "b", 1);
                if (r < 0)
                        return r;
        }
        if (arg_given & ARG_BIT(ARG_SECTOR_SIZE)) {
                r = sd_bus_message_append(m, "{sv}", FUSELOOP_OPT_SECTOR_SIZE, "u",
                                          arg_sector_size);
                if (r < 0)
                        return r;
        }
        if (arg_given & ARG_BIT(ARG_DIRECT_IO)) {
                r = sd_bus_message_append(m, "{sv}", FUSELOOP_OPT_DIRECT_IO, "b",
                                          (int) arg_direct_io);
                if (r < 0)
                        return r;
        }
        if (arg_given & ARG_BIT(ARG_PASSTHROUGH)) {
                r = sd_bus_message_append(m, "{sv}", FUSELOOP_OPT_PASSTHROUGH, "b", (int) arg_passthrough);
                if (r < 0)
                        return r;
        }
        if (arg_given & ARG_BIT(ARG_BIND)) {
                r = sd_bus_message_append(m, "{sv}", FUSELOOP_OPT_BIND_TO_CALLER, "b", 1);
                if (r < 0)
                        return r;
        }
        if (arg_given & ARG_BIT(ARG_TIMEOUT)) {
                r = sd_bus_message_append(m, "{sv}", FUSELOOP_OPT_TIMEOUT, "u", arg_timeout);
                if (r < 0)
                        return r;
        }
        if (arg_given & ARG_BIT(ARG_UNTRUSTED)) {
                r = sd_bus_message_append(m, "{sv}", FUSELOOP_OPT_UNTRUSTED, "b", 1);
                if (r < 0)
                        return r;
        }
        if (arg_mount) {
                r = sd_bus_message_append(m, "{sv}", FUSELOOP_OPT_MOUNT_POINT, "s", arg_mount);
                if (r < 0)
                        return r;
        }

        return sd_bus_message_close_container(m);
}

/* map --bind: the daemon unmaps the mapping when our bus connection closes, so keep it open until
 * SIGINT, SIGTERM or SIGHUP. stdout is closed first, so that a reader of a pipe gets the device
 * and end-of-file at once. */
static int hold_until_signal(sd_bus *bus, const char *device) {
        sigset_t mask;
        int sig, fd;

        if (fflush(stdout) != 0)
                return error_errno(errno, "failed to write the device: %m");
        fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
                (void) dup2(fd, STDOUT_FILENO);
                (void) close(fd);
        }

        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGHUP);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0 || sigwait(&mask, &sig) != 0)
                return error_errno(errno, "failed to wait for a signal: %m");

        /* Closing the connection (on return) is what unmaps; a mount of ours would keep the device
         * busy, so it goes first. */
        (void) bus;
        if (arg_mount && unmount_mapping(device, arg_mount, false) < 0)
                return -EBUSY;
        return 0;
}

/* The partition to mount for map --mount: --partition N, else the first one, else the disk. */
static int mount_target(const char *device, char **ret) {
        _cleanup_(strv_freep) char **parts = NULL;
        char *s;
        int n;

        n = device_partitions(device, &parts);
        if (n < 0)
                return error_errno(n, "failed to list the partitions of '%s': %m", device);

        if (arg_partition > 0) {
                if (asprintf(&s, "%sp%u", device, arg_partition) < 0)
                        return error_errno(ENOMEM, "out of memory");
                for (int i = 0; i < n; i++)
                        if (streq(parts[i], s)) {
                                *ret = s;
                                return 0;
                        }
                free(s);
                return error_errno(ENOENT, "'%s' has no partition %u (it has %i)", device, arg_partition, n);
        }

        s = strdup(n > 0 ? parts[0] : device);
        if (!s)
                return error_errno(ENOMEM, "out of memory");
        *ret = s;
        return 0;
}

/* Takes a mapping that map --mount could not mount down again, so nothing is left behind. */
static void unmap_after_failure(sd_bus *bus, const char *name) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_call_method(bus, FUSELOOP_BUS_NAME, FUSELOOP_MANAGER_PATH, FUSELOOP_MANAGER_INTERFACE, "Unmap",
                               &error, NULL, "sa{sv}", name, 0);
        if (r < 0)
                (void) bus_error_report(&error, r, NULL, "failed to unmap '%s' again", name);
}

/* map NAME SOURCE: opens SOURCE with our own credentials, hands the fd to Map and prints the
 * device path. The name goes through unchanged so users see the daemon's validation. */
static int verb_map(char **args) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(closep) int fd = -EBADF;
        _cleanup_(polkit_agent_stopp) pid_t agent = 0;
        _cleanup_(freep) char *target = NULL, *nbd_export = NULL;
        const char *name = args[0], *source = args[1], *path, *device;
        int r;

        if (source_is_nbd_uri(source)) {
                r = nbd_uri_connect(source, &fd, &nbd_export);
                if (r < 0)
                        return r;
        } else {
                fd = open(source, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        return error_errno(errno, "failed to open '%s': %m", source);
        }

        r = bus_connect(&bus);
        if (r < 0)
                return r;

        r = sd_bus_message_new_method_call(bus, &m, FUSELOOP_BUS_NAME, FUSELOOP_MANAGER_PATH,
                                           FUSELOOP_MANAGER_INTERFACE, "Map");
        if (r < 0)
                return bus_create_error(r);

        /* sd-bus duplicates the fd into the message; ours is closed on return. */
        r = sd_bus_message_append(m, "sh", name, fd);
        if (r < 0)
                return bus_create_error(r);

        r = append_map_options(m, nbd_export);
        if (r < 0)
                return bus_create_error(r);

        agent = polkit_agent_start();

        r = sd_bus_call(bus, m, CALL_TIMEOUT_USEC, &error, &reply);
        /* polkit has answered: no agent stays with map --bind. */
        agent = polkit_agent_stop(agent);
        if (r < 0)
                return bus_error_report(&error, r, FUSELOOP_POLKIT_MAP, "failed to map '%s'", name);

        r = sd_bus_message_read(reply, "os", &path, &device);
        if (r < 0)
                return bus_parse_error(r);
        /* Callers use the printed line as a device: a reply without one is an error, not "". */
        if (strncmp(device, "/dev/", 5) != 0) {
                unmap_after_failure(bus, name);
                return error_errno(EPROTO, "fuseloopd mapped '%s' but named no device ('%s'); unmapped it again",
                                   name, device);
        }

        if (arg_mount) {
                r = mount_target(device, &target);
                if (r >= 0)
                        r = mount_device(target, arg_mount);
                if (r < 0) {
                        unmap_after_failure(bus, name);
                        return r;
                }
        }

        printf("%s\n", device);
        if (!(arg_given & ARG_BIT(ARG_BIND)))
                return 0;

        return hold_until_signal(bus, device);
}

/* unmap NAME|/dev/loopN: the daemon resolves either form. A mount that map --mount made goes
 * first. */
static int verb_unmap(char **args) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *props = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(polkit_agent_stopp) pid_t agent = 0;
        _cleanup_(freep) char *name = NULL;
        const char *target = args[0];
        MappingStatus st;
        int r;

        r = bus_connect(&bus);
        if (r < 0)
                return r;

        r = mapping_resolve(bus, target, &name);
        if (r < 0)
                return r;
        r = mapping_get(bus, name, &props, &st);
        if (r < 0)
                return r;
        if (!isempty(st.mount_point) && !isempty(st.device)) {
                r = unmount_mapping(st.device, st.mount_point, arg_given & ARG_BIT(ARG_LAZY));
                if (r < 0)
                        return r;
        }

        r = sd_bus_message_new_method_call(bus, &m, FUSELOOP_BUS_NAME, FUSELOOP_MANAGER_PATH,
                                           FUSELOOP_MANAGER_INTERFACE, "Unmap");
        if (r < 0)
                return bus_create_error(r);

        r = sd_bus_message_append(m, "s", target);
        if (r < 0)
                return bus_create_error(r);

        if (arg_given & ARG_BIT(ARG_LAZY))
                r = sd_bus_message_append(m, "a{sv}", 1, FUSELOOP_OPT_LAZY, "b", 1);
        else
                r = sd_bus_message_append(m, "a{sv}", 0);
        if (r < 0)
                return bus_create_error(r);

        agent = polkit_agent_start();

        /* The owner of a mapping and root may always unmap it, so a refusal means that it is
         * someone else's. */
        r = sd_bus_call(bus, m, CALL_TIMEOUT_USEC, &error, NULL);
        agent = polkit_agent_stop(agent);
        if (r < 0)
                return bus_error_report(&error, r, FUSELOOP_POLKIT_UNMAP_OTHER,
                                        "failed to unmap '%s'", target);

        return 0;
}

/* One line of the list table; strings of st point into the reply message. */
typedef struct ListRow {
        const char *path;
        MappingStatus st;
        char state[64];
        char size[32];
        char *owner;
        bool owner_named;
} ListRow;

/* The rows of the list table; the cleanup frees what the rows own. */
typedef struct ListTable {
        ListRow *rows;
        size_t n, allocated;
} ListTable;

static void list_table_done(ListTable *t) {
        for (size_t i = 0; i < t->n; i++)
                free(t->rows[i].owner);
        t->rows = mfree(t->rows);
        t->n = t->allocated = 0;
}

static const char *list_row_name(const ListRow *row) {
        /* Every mapping object has a Name; the path is only a last resort. */
        return isempty(row->st.name) ? row->path : row->st.name;
}

static int list_row_compare(const void *a, const void *b) {
        return strcmp(list_row_name(a), list_row_name(b));
}

/* Adds the row of one mapping to t. Returns 0 or -errno after reporting it. */
static int list_table_add(ListTable *t, const char *path, const MappingStatus *st) {
        ListRow *row;
        int r;

        if (t->n >= t->allocated) {
                size_t k = MAX(t->allocated * 2, (size_t) 16);
                ListRow *p = reallocarray(t->rows, k, sizeof(ListRow));

                if (!p)
                        return error_errno(ENOMEM, "out of memory");
                t->rows = p;
                t->allocated = k;
        }

        row = &t->rows[t->n];
        *row = (ListRow) { .path = path, .st = *st };
        (void) format_bytes(row->size, sizeof(row->size), st->size);
        /* A stalled source is what someone looking at the list needs to see first. States are
         * short words; a longer one from a newer daemon is cut, not overflowed. */
        (void) snprintf(row->state, sizeof(row->state), "%s%s", empty_to_dash(st->state),
                        !isempty(st->source_error) ? " (source failed)" : st->stalled ? " (stalled)" : "");

        /* Most mappings share a few owners: ask the user database once per uid. */
        for (size_t i = 0; i < t->n; i++)
                if (t->rows[i].st.owner_uid == st->owner_uid) {
                        row->owner = strdup(t->rows[i].owner);
                        if (!row->owner)
                                return error_errno(ENOMEM, "out of memory");
                        row->owner_named = t->rows[i].owner_named;
                        break;
                }
        if (!row->owner) {
                r = owner_format(st->owner_uid, &row->owner);
                if (r < 0)
                        return error_errno(r, "failed to format the owner of '%s': %m", list_row_name(row));
                row->owner_named = r > 0;
        }

        t->n++;
        return 0;
}

/* The fields that list --json and status --json share, added to obj. */
static int json_add_common(json_object *obj, const char *path, const MappingStatus *st, const char *owner,
                           bool owner_named) {
        int r = 0;

        r = r ?: json_add_string(obj, "name", st->name);
        r = r ?: json_add_string(obj, "object_path", path);
        r = r ?: json_add_string(obj, "device", isempty(st->device) ? NULL : st->device);
        r = r ?: json_add_u64(obj, "size", st->size);
        r = r ?: json_add_string(obj, "state", st->state);
        r = r ?: json_add_bool(obj, "stalled", st->stalled);
        r = r ?: json_add_string(obj, "source", st->source);
        r = r ?: json_add_string(obj, "source_error", isempty(st->source_error) ? NULL : st->source_error);
        r = r ?: json_add_string(obj, "read_path", isempty(st->read_path) ? NULL : st->read_path);
        r = r ?: json_add_u64(obj, "owner_uid", st->owner_uid);
        r = r ?: json_add_string(obj, "owner", owner_named ? owner : NULL);
        r = r ?: json_add_u64(obj, "created_usec", st->created_usec);
        r = r ?: json_add_bool(obj, "untrusted", st->untrusted);
        r = r ?: json_add_string(obj, "mount_point", isempty(st->mount_point) ? NULL : st->mount_point);
        return r;
}

static int list_print_json(const ListTable *t) {
        _cleanup_(json_object_putp) json_object *array = json_object_new_array();
        int r;

        if (!array)
                return error_errno(ENOMEM, "out of memory");

        for (size_t i = 0; i < t->n; i++) {
                json_object *o = json_object_new_object();

                if (!o || json_object_array_add(array, o) < 0) {
                        json_object_put(o);
                        return error_errno(ENOMEM, "out of memory");
                }
                r = json_add_common(o, t->rows[i].path, &t->rows[i].st, t->rows[i].owner, t->rows[i].owner_named);
                if (r < 0)
                        return error_errno(r, "out of memory");
        }

        r = json_print(TAKE_PTR(array));
        if (r < 0)
                return error_errno(r, "out of memory");
        return 0;
}

/* list: one aligned line per mapping, sorted by name, or a JSON array. The List method has no
 * owner, so everything comes from the mapping objects' properties, fetched in one
 * GetManagedObjects call. */
static int verb_list(char **args) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(list_table_done) ListTable t = {};
        MappingStatus st;
        const char *path;
        int wname = strlen("NAME"), wdev = strlen("DEVICE"), wsize = strlen("SIZE");
        int wstate = strlen("STATE"), wowner = strlen("OWNER");
        int r;

        (void) args;

        r = bus_connect(&bus);
        if (r < 0)
                return r;

        r = mappings_get(bus, &reply);
        if (r < 0)
                return r;

        while ((r = mappings_next(reply, &path, &st)) > 0) {
                r = list_table_add(&t, path, &st);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;

        if (t.n > 0)
                qsort(t.rows, t.n, sizeof(ListRow), list_row_compare);

        if (arg_json != JSON_OFF)
                return list_print_json(&t);

        for (size_t i = 0; i < t.n; i++) {
                wname = MAX(wname, (int) strlen(list_row_name(&t.rows[i])));
                wdev = MAX(wdev, (int) strlen(empty_to_dash(t.rows[i].st.device)));
                wsize = MAX(wsize, (int) strlen(t.rows[i].size));
                wstate = MAX(wstate, (int) strlen(t.rows[i].state));
                wowner = MAX(wowner, (int) strlen(t.rows[i].owner));
        }

        if (!(arg_given & ARG_BIT(ARG_NO_LEGEND)))
                printf("%-*s  %-*s  %*s  %-*s  %-*s  %s\n", wname, "NAME", wdev, "DEVICE", wsize,
                       "SIZE", wstate, "STATE", wowner, "OWNER", "SOURCE");
        for (size_t i = 0; i < t.n; i++)
                printf("%-*s  %-*s  %*s  %-*s  %-*s  %s\n", wname, list_row_name(&t.rows[i]), wdev,
                       empty_to_dash(t.rows[i].st.device), wsize, t.rows[i].size, wstate, t.rows[i].state,
                       wowner, t.rows[i].owner, empty_to_dash(t.rows[i].st.source));

        return 0;
}

/* The stable name udev gives the device (or a partition): "/dev/fuseloop/NAME", if it exists and
 * leads to device. */
static bool stable_name_ok(const char *name, const char *device, char *buf, size_t len) {
        _cleanup_(freep) char *target = NULL;

        if (isempty(name) || isempty(device))
                return false;
        (void) snprintf(buf, len, "/dev/fuseloop/%s", name);
        target = realpath(buf, NULL);
        return target && streq(target, device);
}

static int status_print_json(const char *path, const MappingStatus *st, const char *owner, bool owner_named,
                             char **parts, uint64_t age_usec, const char *link) {
        _cleanup_(json_object_putp) json_object *obj = json_object_new_object();
        json_object *a, *stats, *lat, *k;
        int r = 0;

        if (!obj)
                return error_errno(ENOMEM, "out of memory");

        r = r ?: json_add_common(obj, path, st, owner, owner_named);
        r = r ?: json_add_string(obj, "stable_name", link);
        r = r ?: json_add_string(obj, "backing_file", st->backing_file);
        r = r ?: json_add_u64(obj, "offset", st->offset);
        r = r ?: json_add_u64(obj, "sector_size", st->sector_size);
        r = r ?: json_add_bool(obj, "partition_scan", st->partition_scan);
        r = r ?: json_add_bool(obj, "direct_io", st->direct_io);
        r = r ?: json_add_u64(obj, "timeout_sec", st->timeout_sec);
        r = r ?: json_add_u64(obj, "age_usec", age_usec);
        if (r < 0)
                return error_errno(r, "out of memory");

        a = json_object_new_array();
        if (!a || json_add(obj, "partitions", a) < 0)
                return error_errno(ENOMEM, "out of memory");
        for (char **p = parts; *p; p++) {
                json_object *s = json_object_new_string(*p);

                if (!s || json_object_array_add(a, s) < 0) {
                        json_object_put(s);
                        return error_errno(ENOMEM, "out of memory");
                }
        }

        stats = json_object_new_object();
        if (!stats || json_add(obj, "statistics", stats) < 0)
                return error_errno(ENOMEM, "out of memory");
        r = r ?: json_add_u64(stats, "bytes_read", st->bytes_read);
        r = r ?: json_add_u64(stats, "read_requests", st->read_requests);
        r = r ?: json_add_u64(stats, "read_errors", st->read_errors);
        r = r ?: json_add_u64(stats, "timed_out_reads", st->timed_out_reads);
        r = r ?: json_add_u64(stats, "reads_in_flight", st->reads_in_flight);
        r = r ?: json_add(stats, "cache_hit_ratio",
                          st->cache_hit_ratio >= 0 && isfinite(st->cache_hit_ratio) ?
                          json_object_new_double(st->cache_hit_ratio) : NULL);
        if (r < 0)
                return error_errno(r, "out of memory");
        lat = json_object_new_object();
        if (!lat || json_add(stats, "read_latency_usec", lat) < 0)
                return error_errno(ENOMEM, "out of memory");
        r = r ?: json_add_u64(lat, "p50", st->latency_p50);
        r = r ?: json_add_u64(lat, "p90", st->latency_p90);
        r = r ?: json_add_u64(lat, "p99", st->latency_p99);
        r = r ?: json_add_u64(lat, "max", st->latency_max);
        if (r < 0)
                return error_errno(r, "out of memory");

        k = json_object_new_object();
        if (!k || json_add(obj, "kernel", k) < 0)
                return error_errno(ENOMEM, "out of memory");
        r = r ?: json_add_u64(k, "read_ios", st->kernel_read_ios);
        r = r ?: json_add_u64(k, "read_bytes", st->kernel_read_bytes);
        r = r ?: json_add_u64(k, "in_flight", st->kernel_in_flight);
        if (r < 0)
                return error_errno(r, "out of memory");

        r = json_print(TAKE_PTR(obj));
        if (r < 0)
                return error_errno(r, "out of memory");
        return 0;
}

/* status NAME: the mapping's properties, partitions, statistics and the kernel's view of its
 * device. */
static int verb_status(char **args) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(freep) char *owner = NULL, *path = NULL;
        _cleanup_(strv_freep) char **parts = NULL;
        const char *name = args[0];
        char size[32], created[64] = "-", age[32], link[PATH_MAX], b1[32], b2[32], b3[32], b4[32];
        uint64_t now = now_usec(CLOCK_REALTIME), age_usec = 0;
        MappingStatus st;
        bool owner_named, have_link;
        int r;

        r = bus_connect(&bus);
        if (r < 0)
                return r;

        r = mapping_get(bus, name, &reply, &st);
        if (r < 0)
                return r;

        r = sd_bus_path_encode(FUSELOOP_MAPPING_PATH_PREFIX, name, &path);
        if (r < 0)
                return error_errno(r, "failed to build the object path of '%s': %m", name);

        r = owner_format(st.owner_uid, &owner);
        if (r < 0)
                return error_errno(r, "failed to format the owner of '%s': %m", name);
        owner_named = r > 0;

        r = device_partitions(st.device, &parts);
        if (r < 0)
                return error_errno(r, "out of memory");

        have_link = stable_name_ok(st.name, st.device, link, sizeof(link));
        if (st.created_usec > 0 && now > st.created_usec)
                age_usec = now - st.created_usec;

        if (arg_json != JSON_OFF)
                return status_print_json(path, &st, owner, owner_named, parts, age_usec, have_link ? link : NULL);

        if (st.created_usec > 0) {
                time_t t = (time_t) (st.created_usec / UINT64_C(1000000));
                struct tm tm;

                tzset();
                if (!localtime_r(&t, &tm) ||
                    strftime(created, sizeof(created), "%Y-%m-%d %H:%M:%S %Z", &tm) == 0)
                        (void) strcpy(created, "-");
        }

        printf("Name: %s\n", empty_to_dash(st.name));
        if (have_link)
                printf("Device: %s (%s)\n", empty_to_dash(st.device), link);
        else
                printf("Device: %s\n", empty_to_dash(st.device));
        printf("Partitions:");
        for (char **p = parts; *p; p++)
                printf(" %s", *p);
        printf("%s\n", parts[0] ? "" : " -");
        printf("State: %s\n", empty_to_dash(st.state));
        printf("Stalled: %s\n", yes_no(st.stalled));
        printf("Source: %s\n", empty_to_dash(st.source));
        if (!isempty(st.source_error))
                printf("Source error: %s\n", st.source_error);
        /* Passthrough reads never reach fuseloopd: only the kernel's counters count them. */
        if (!isempty(st.read_path))
                printf("Read path: %s\n", streq(st.read_path, "passthrough") ?
                                                   "passthrough (the kernel reads the source)" :
                                                   streq(st.read_path, "daemon") ? "fuseloopd" : st.read_path);
        if (owner_named)
                printf("Owner: %s (UID %" PRIu32 ")\n", owner, st.owner_uid);
        else
                printf("Owner: UID %" PRIu32 "\n", st.owner_uid);
        printf("Created: %s (%s ago)\n", created, format_usec(age, sizeof(age), age_usec));
        printf("Size: %s (%" PRIu64 " bytes)\n", format_size(size, sizeof(size), st.size), st.size);
        printf("Offset: %" PRIu64 "\n", st.offset);
        printf("Sector size: %" PRIu32 "\n", st.sector_size);
        printf("Partition scan: %s\n", yes_no(st.partition_scan));
        printf("Direct I/O: %s\n", yes_no(st.direct_io));
        if (st.timeout_sec > 0)
                printf("Timeout: %" PRIu32 " s\n", st.timeout_sec);
        else
                printf("Timeout: none\n");
        printf("Untrusted: %s\n", yes_no(st.untrusted));
        if (!isempty(st.mount_point))
                printf("Mount point: %s\n", st.mount_point);
        printf("Backing file: %s\n", empty_to_dash(st.backing_file));
        printf("Bytes read: %s\n", format_bytes(size, sizeof(size), st.bytes_read));
        printf("Read requests: %" PRIu64 " (%" PRIu32 " in flight)\n", st.read_requests, st.reads_in_flight);
        printf("Read errors: %" PRIu64 "\n", st.read_errors);
        printf("Timed-out reads: %" PRIu64 "\n", st.timed_out_reads);
        if (st.read_requests > 0)
                printf("Read latency: p50 %s, p90 %s, p99 %s, max %s\n",
                       format_usec(b1, sizeof(b1), st.latency_p50), format_usec(b2, sizeof(b2), st.latency_p90),
                       format_usec(b3, sizeof(b3), st.latency_p99), format_usec(b4, sizeof(b4), st.latency_max));
        else
                printf("Read latency: -\n");
        if (st.cache_hit_ratio >= 0 && isfinite(st.cache_hit_ratio))
                printf("Cache hits: %.1f%% of what the loop device read\n", st.cache_hit_ratio * 100.0);
        else
                printf("Cache hits: -\n");
        /* What the kernel counted for the loop device since it was attached for this mapping. */
        if (!isempty(st.device))
                printf("Kernel: %" PRIu64 " reads, %s read, %" PRIu32 " in flight (/sys/block/loop%i/stat)\n",
                       st.kernel_read_ios, format_bytes(size, sizeof(size), st.kernel_read_bytes),
                       st.kernel_in_flight, loop_device_parse_number(st.device));
        else
                printf("Kernel: -\n");
        return 0;
}

static void help(void) {
        printf("fuseloopctl [OPTIONS...] COMMAND ...\n"
               "\n"
               "Map data sources read-only as loop devices through fuseloopd.\n"
               "\n"
               "Commands:\n"
               "  map NAME SOURCE          Map SOURCE (opened by this command), print the device\n"
               "  unmap NAME|/dev/loopN    Remove a mapping (unmounting what map --mount mounted)\n"
               "  list                     List mappings: name, device, size, state, owner (user\n"
               "                           name, or UID without a passwd entry), source\n"
               "  status NAME              Show a mapping: device, partitions, source, owner, age,\n"
               "                           read statistics and the kernel's view of the device\n"
               "  monitor                  Print mappings being added and removed and changes of\n"
               "                           their state, as they happen, until interrupted\n"
               "  wait NAME                Wait until mapping NAME is active\n"
               "\n"
               "Options:\n"
               "  -h --help                Show this help\n"
               "     --version             Show the version\n"
               "     --partscan            map: scan the device for partitions\n"
               "     --offset BYTES        map: start this far into SOURCE\n"
               "     --size BYTES          map: map this many bytes (default: up to the end)\n"
               "     --sector-size N       map: logical sector size (512, 1024, 2048, 4096)\n"
               "     --direct-io=on|off    map: use direct I/O on the loop device\n"
               "     --passthrough=on|off  map: let the kernel read a file SOURCE itself (FUSE\n"
               "                           passthrough, the default where the kernel can)\n"
               "     --bind                map: stay running after printing the device; the mapping\n"
               "                           is unmapped when this command ends (SIGINT/SIGTERM)\n"
               "     --timeout SECS        map: a read that waits longer for SOURCE fails with an\n"
               "                           I/O error (0: wait as long as it takes, the default)\n"
               "                           wait: give up after SECS seconds (exit code 6)\n"
               "     --untrusted           map: mark the device so that desktops do not mount it\n"
               "     --mount DIR           map: mount the first partition (or the device, without\n"
               "                           partitions) read-only at DIR; implies --partscan\n"
               "     --partition N         map --mount: mount partition N instead\n"
               "     --lazy                unmap: detach once the last user closes the device\n"
               "     --no-legend           list: omit the header line\n"
               "     --json[=short|pretty] list, status, monitor: print JSON (short: one line)\n"
               "     --bytes               list, status: exact byte counts, not 16M\n"
               "     --removed             wait: wait until NAME is gone instead\n"
               "     --no-ask-password     Do not let polkit ask for a password. Without this\n"
               "                           option, when stdin is a terminal, polkit may ask\n"
               "                           through the desktop's agent or, without one, on the\n"
               "                           terminal (fuseloopctl starts pkttyagent)\n"
               "\n"
               "BYTES takes a K, M, G or T suffix (powers of 1024).\n"
               "\n"
               "Exit codes: 0 success, 1 failure, 2 usage error, 3 no such mapping,\n"
               "4 access denied, 5 busy (device or mount in use), 6 timed out (wait).\n"
               "\n"
               "polkit: map needs " FUSELOOP_POLKIT_MAP ", unmap of another user's\n"
               "mapping needs " FUSELOOP_POLKIT_UNMAP_OTHER ". root needs neither, and\n"
               "the user who made a mapping may always unmap it.\n");
}

/* Returns 1 to go on with a verb, 0 after --help/--version, -EINVAL on a usage error (reported). */
static int parse_argv(int argc, char *argv[]) {
        uint64_t v;
        int c, r;

        /* Report problems ourselves, as one "fuseloopctl: ..." line. */
        opterr = 0;

        while ((c = getopt_long(argc, argv, ":h", options, NULL)) >= 0) {
                if (c >= ARG_VERSION)
                        arg_given |= ARG_BIT(c);

                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("fuseloopctl %s\n", FUSELOOP_VERSION);
                        return 0;
                case ARG_OFFSET:
                        r = parse_size(optarg, &arg_offset);
                        if (r < 0)
                                return error_errno(EINVAL, "invalid offset '%s': %s", optarg,
                                                   strerror(-r));
                        break;
                case ARG_SIZE:
                        r = parse_size(optarg, &arg_size);
                        if (r < 0)
                                return error_errno(EINVAL, "invalid size '%s': %s", optarg,
                                                   strerror(-r));
                        break;
                case ARG_SECTOR_SIZE:
                        /* Which sizes the kernel takes is the daemon's call; we only check that
                         * the value fits the 'u' it is sent as. */
                        r = safe_atou64(optarg, &v);
                        if (r < 0 || v > UINT32_MAX)
                                return error_errno(EINVAL, "invalid sector size '%s'", optarg);
                        arg_sector_size = (uint32_t) v;
                        break;
                case ARG_TIMEOUT:
                        /* For map the daemon judges the range; we only check that it fits the
                         * 'u'. wait takes the same seconds. */
                        r = safe_atou64(optarg, &v);
                        if (r < 0 || v > UINT32_MAX)
                                return error_errno(EINVAL, "invalid timeout '%s', expected seconds", optarg);
                        arg_timeout = (uint32_t) v;
                        arg_wait_timeout_usec = v * UINT64_C(1000000);
                        break;
                case ARG_DIRECT_IO:
                case ARG_PASSTHROUGH: {
                        bool *b = c == ARG_DIRECT_IO ? &arg_direct_io : &arg_passthrough;

                        if (strcmp(optarg, "on") == 0)
                                *b = true;
                        else if (strcmp(optarg, "off") == 0)
                                *b = false;
                        else
                                return error_errno(EINVAL, "invalid --%s value '%s', expected 'on' or 'off'",
                                                   c == ARG_DIRECT_IO ? "direct-io" : "passthrough", optarg);
                        break;
                }
                case ARG_MOUNT:
                        /* The daemon records it as given; mount(8) and the unmount later must
                         * agree on it, so it must name one place. */
                        if (optarg[0] != '/')
                                return error_errno(EINVAL, "--mount needs an absolute directory, not '%s'", optarg);
                        free(arg_mount);
                        arg_mount = realpath(optarg, NULL);
                        if (!arg_mount)
                                return error_errno(errno, "cannot use '%s' as mount point: %m", optarg);
                        break;
                case ARG_PARTITION:
                        r = safe_atou64(optarg, &v);
                        if (r < 0 || v < 1 || v > 256)
                                return error_errno(EINVAL, "invalid partition number '%s', expected 1-256", optarg);
                        arg_partition = (unsigned) v;
                        break;
                case ARG_JSON:
                        if (!optarg || streq(optarg, "short"))
                                arg_json = JSON_SHORT;
                        else if (streq(optarg, "pretty"))
                                arg_json = JSON_PRETTY;
                        else if (streq(optarg, "off"))
                                arg_json = JSON_OFF;
                        else
                                return error_errno(EINVAL, "invalid --json value '%s', expected 'short' or "
                                                   "'pretty'", optarg);
                        break;
                case ARG_PARTSCAN:
                case ARG_BIND:
                case ARG_UNTRUSTED:
                case ARG_LAZY:
                case ARG_NO_LEGEND:
                case ARG_BYTES:
                        break;
                case ARG_REMOVED:
                        arg_wait_removed = true;
                        break;
                case ARG_NO_ASK_PASSWORD:
                        arg_ask_password = false;
                        break;
                case ':':
                        return error_errno(EINVAL, "option '%s' needs an argument",
                                           argv[optind - 1]);
                case '?':
                        if (optopt > 0 && optopt < ARG_VERSION)
                                return error_errno(EINVAL, "unknown option '-%c'", optopt);
                        return error_errno(EINVAL, "unknown option '%s'", argv[optind - 1]);
                default:
                        return error_errno(EINVAL, "unexpected option %i", c);
                }
        }

        if ((arg_given & ARG_BIT(ARG_PARTITION)) && !arg_mount)
                return error_errno(EINVAL, "--partition needs --mount");

        return 1;
}

static const struct {
        const char *name;
        int args;               /* exact number of positional arguments after the verb */
        const char *usage;
        unsigned options;       /* ARG_BIT()s this verb accepts */
        int (*run)(char **args);
} verbs[] = {
        { "map",     2, "map [OPTIONS...] NAME SOURCE",
          ARG_BIT(ARG_PARTSCAN) | ARG_BIT(ARG_OFFSET) | ARG_BIT(ARG_SIZE) |
          ARG_BIT(ARG_SECTOR_SIZE) | ARG_BIT(ARG_DIRECT_IO) | ARG_BIT(ARG_BIND) |
          ARG_BIT(ARG_TIMEOUT) | ARG_BIT(ARG_UNTRUSTED) | ARG_BIT(ARG_MOUNT) | ARG_BIT(ARG_PARTITION) |
          ARG_BIT(ARG_PASSTHROUGH),
          verb_map },
        { "unmap",   1, "unmap [--lazy] NAME|/dev/loopN", ARG_BIT(ARG_LAZY), verb_unmap },
        { "list",    0, "list [--json[=short|pretty]] [--no-legend] [--bytes]",
          ARG_BIT(ARG_NO_LEGEND) | ARG_BIT(ARG_JSON) | ARG_BIT(ARG_BYTES), verb_list },
        { "status",  1, "status [--json[=short|pretty]] [--bytes] NAME",
          ARG_BIT(ARG_JSON) | ARG_BIT(ARG_BYTES), verb_status },
        { "monitor", 0, "monitor [--json[=short|pretty]]", ARG_BIT(ARG_JSON), verb_monitor },
        { "wait",    1, "wait [--removed] [--timeout SECS] NAME",
          ARG_BIT(ARG_REMOVED) | ARG_BIT(ARG_TIMEOUT), verb_wait },
};

int main(int argc, char *argv[]) {
        const char *verb;
        unsigned foreign;
        size_t i;
        int r;

        r = parse_argv(argc, argv);
        if (r < 0) {
                free(arg_mount);
                return EXIT_USAGE;
        }
        if (r == 0)
                goto finish;

        if (optind >= argc) {
                (void) error_errno(EINVAL, "missing command, see --help");
                r = -EINVAL;
                exit_code_set(EXIT_USAGE);
                goto finish;
        }
        verb = argv[optind];

        for (i = 0; i < ELEMENTSOF(verbs); i++)
                if (strcmp(verb, verbs[i].name) == 0)
                        break;
        if (i >= ELEMENTSOF(verbs)) {
                (void) error_errno(EINVAL, "unknown command '%s', see --help", verb);
                r = -EINVAL;
                exit_code_set(EXIT_USAGE);
                goto finish;
        }

        if (argc - optind - 1 != verbs[i].args) {
                (void) error_errno(EINVAL, "%s arguments, usage: fuseloopctl %s",
                                   argc - optind - 1 < verbs[i].args ? "missing" : "too many",
                                   verbs[i].usage);
                r = -EINVAL;
                exit_code_set(EXIT_USAGE);
                goto finish;
        }

        foreign = arg_given & ~(verbs[i].options | ARG_GLOBAL);
        if (foreign) {
                for (const struct option *o = options; o->name; o++)
                        if (o->val >= ARG_VERSION && (foreign & ARG_BIT(o->val))) {
                                (void) error_errno(EINVAL, "option '--%s' does not apply to '%s'",
                                                   o->name, verb);
                                break;
                        }
                r = -EINVAL;
                exit_code_set(EXIT_USAGE);
                goto finish;
        }

        r = verbs[i].run(argv + optind + 1);

finish:
        free(arg_mount);
        /* A device path that never reached the caller is a failure too. */
        if (fflush(stdout) != 0 && r >= 0)
                r = error_errno(errno, "failed to write output: %m");

        return r < 0 ? exit_code_get() : EXIT_OK;
}
