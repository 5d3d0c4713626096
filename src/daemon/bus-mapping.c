/* The org.proxmox.FuseLoop1.Mapping objects: properties, Unmap, and their signals. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus-mapping.h"
#include "bus-names.h"
#include "log.h"
#include "macro.h"

/* More entries than Map knows options is abuse, not a request. */
#define OPTIONS_MAX 32

int bus_read_options(sd_bus_message *msg, OptionSetter set, void *o, sd_bus_error *error) {
        unsigned n = 0;
        int r;

        r = sd_bus_message_enter_container(msg, 'a', "{sv}");
        if (r < 0)
                return r;

        for (;;) {
                const char *key, *contents;
                OptionValue v = {};
                char err[256];

                r = sd_bus_message_enter_container(msg, 'e', "sv");
                if (r < 0)
                        return r;
                if (r == 0)
                        break;

                if (++n > OPTIONS_MAX)
                        return sd_bus_error_setf(error, FUSELOOP_ERROR_INVALID_OPTION,
                                                 "Too many options (at most %u).", OPTIONS_MAX);

                r = sd_bus_message_read(msg, "s", &key);
                if (r < 0)
                        return r;

                r = sd_bus_message_peek_type(msg, NULL, &contents);
                if (r < 0)
                        return r;

                r = sd_bus_message_enter_container(msg, 'v', contents);
                if (r < 0)
                        return r;

                if (streq(contents, "t"))
                        r = sd_bus_message_read_basic(msg, 't', &v.t);
                else if (streq(contents, "u"))
                        r = sd_bus_message_read_basic(msg, 'u', &v.u);
                else if (streq(contents, "b"))
                        r = sd_bus_message_read_basic(msg, 'b', &v.b);
                else if (streq(contents, "s"))
                        r = sd_bus_message_read_basic(msg, 's', &v.s);
                else
                        r = sd_bus_message_skip(msg, contents);
                if (r < 0)
                        return r;

                r = sd_bus_message_exit_container(msg);
                if (r < 0)
                        return r;

                r = set(o, key, contents, &v, err, sizeof(err));
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        return sd_bus_error_setf(error, FUSELOOP_ERROR_INVALID_OPTION, "Invalid option: %s.", err);

                r = sd_bus_message_exit_container(msg);
                if (r < 0)
                        return r;
        }

        return sd_bus_message_exit_container(msg);
}

static int find_mapping(sd_bus *bus _unused_, const char *path, const char *interface _unused_, void *userdata,
                        void **found, sd_bus_error *error _unused_) {
        Manager *manager = userdata;
        _cleanup_(freep) char *name = NULL;
        Mapping *m;
        int r;

        r = sd_bus_path_decode(path, FUSELOOP_MAPPING_PATH_PREFIX, &name);
        if (r <= 0)
                return r;

        m = manager_find_mapping(manager, name);
        if (!m || !m->published)
                return 0;

        *found = m;
        return 1;
}

static int enumerate_mappings(sd_bus *bus _unused_, const char *path _unused_, void *userdata, char ***nodes,
                              sd_bus_error *error _unused_) {
        Manager *manager = userdata;
        char **list;
        size_t n = 0;

        list = calloc(manager->n_mappings + 1, sizeof(char *));
        if (!list)
                return -ENOMEM;

        for (Mapping *m = manager->mappings; m; m = m->next) {
                if (!m->published)
                        continue;
                list[n] = strdup(m->object_path);
                if (!list[n]) {
                        for (size_t i = 0; i < n; i++)
                                free(list[i]);
                        free(list);
                        return -ENOMEM;
                }
                n++;
        }

        *nodes = list;
        return 1;
}

static int property_get_bool(sd_bus *bus _unused_, const char *path _unused_, const char *interface _unused_,
                             const char *property _unused_, sd_bus_message *reply, void *userdata,
                             sd_bus_error *error _unused_) {
        /* sd-bus hands us the field itself (userdata plus the vtable offset); it is a C bool. */
        const bool *b = userdata;

        return sd_bus_message_append(reply, "b", (int) *b);
}

static int property_get_device(sd_bus *bus _unused_, const char *path _unused_, const char *interface _unused_,
                               const char *property _unused_, sd_bus_message *reply, void *userdata,
                               sd_bus_error *error _unused_) {
        Mapping *m = userdata;
        char dev[32];

        return sd_bus_message_append(reply, "s", mapping_device(m, dev, sizeof(dev)));
}

static int property_get_source(sd_bus *bus _unused_, const char *path _unused_, const char *interface _unused_,
                               const char *property _unused_, sd_bus_message *reply, void *userdata,
                               sd_bus_error *error _unused_) {
        Mapping *m = userdata;

        return sd_bus_message_append(reply, "s", m->source_description ?: "");
}

static int property_get_mount_point(sd_bus *bus _unused_, const char *path _unused_, const char *interface _unused_,
                                    const char *property _unused_, sd_bus_message *reply, void *userdata,
                                    sd_bus_error *error _unused_) {
        Mapping *m = userdata;

        return sd_bus_message_append(reply, "s", m->options.mount_point ?: "");
}

static int property_get_state(sd_bus *bus _unused_, const char *path _unused_, const char *interface _unused_,
                              const char *property _unused_, sd_bus_message *reply, void *userdata,
                              sd_bus_error *error _unused_) {
        Mapping *m = userdata;

        return sd_bus_message_append(reply, "s", mapping_state_to_string(m->state));
}

static int property_get_counter(sd_bus *bus _unused_, const char *path _unused_, const char *interface _unused_,
                                const char *property, sd_bus_message *reply, void *userdata,
                                sd_bus_error *error _unused_) {
        const FuseFileStats *st = mapping_stats(userdata);
        uint64_t v;

        if (streq(property, "BytesRead"))
                v = st->bytes_read;
        else if (streq(property, "ReadRequests"))
                v = st->read_requests;
        else if (streq(property, "TimedOutReads"))
                v = st->timed_out_reads;
        else
                v = st->read_errors;
        return sd_bus_message_append(reply, "t", v);
}

static int property_get_reads_in_flight(sd_bus *bus _unused_, const char *path _unused_,
                                       const char *interface _unused_, const char *property _unused_,
                                       sd_bus_message *reply, void *userdata, sd_bus_error *error _unused_) {
        Mapping *m = userdata;

        return sd_bus_message_append(reply, "u", (uint32_t) (m->fuse ? fuse_file_n_in_flight(m->fuse) : 0));
}

static int property_get_read_latency(sd_bus *bus _unused_, const char *path _unused_, const char *interface _unused_,
                                     const char *property, sd_bus_message *reply, void *userdata,
                                     sd_bus_error *error _unused_) {
        const Histogram *h = &mapping_stats(userdata)->read_latency_usec;
        unsigned per_mille;

        if (streq(property, "ReadLatencyP50USec"))
                per_mille = 500;
        else if (streq(property, "ReadLatencyP90USec"))
                per_mille = 900;
        else if (streq(property, "ReadLatencyP99USec"))
                per_mille = 990;
        else
                per_mille = 1000;
        return sd_bus_message_append(reply, "t", histogram_percentile(h, per_mille));
}

static int property_get_cache_hit_ratio(sd_bus *bus _unused_, const char *path _unused_,
                                        const char *interface _unused_, const char *property _unused_,
                                        sd_bus_message *reply, void *userdata, sd_bus_error *error _unused_) {
        Mapping *m = userdata;

        return sd_bus_message_append(reply, "d", mapping_cache_hit_ratio(m));
}

static int property_get_kernel(sd_bus *bus _unused_, const char *path _unused_, const char *interface _unused_,
                               const char *property, sd_bus_message *reply, void *userdata,
                               sd_bus_error *error _unused_) {
        BlockStat bs = {};

        /* No device (yet, or any more): nothing counted. */
        (void) mapping_kernel_stat(userdata, &bs);
        if (streq(property, "KernelInFlight"))
                return sd_bus_message_append(reply, "u", (uint32_t) MIN(bs.in_flight, (uint64_t) UINT32_MAX));
        return sd_bus_message_append(reply, "t", streq(property, "KernelReadIOs") ? bs.read_ios : bs.read_sectors * 512);
}

static int property_get_stalled(sd_bus *bus _unused_, const char *path _unused_, const char *interface _unused_,
                                const char *property _unused_, sd_bus_message *reply, void *userdata,
                                sd_bus_error *error _unused_) {
        Mapping *m = userdata;

        /* Only the FUSE session knows; before it exists and after it is gone nothing waits. */
        return sd_bus_message_append(reply, "b", (int) (m->fuse && fuse_file_is_stalled(m->fuse)));
}

static int property_get_source_error(sd_bus *bus _unused_, const char *path _unused_,
                                     const char *interface _unused_, const char *property _unused_,
                                     sd_bus_message *reply, void *userdata, sd_bus_error *error _unused_) {
        Mapping *m = userdata;

        return sd_bus_message_append(reply, "s", m->source && m->source->error ? m->source->error : "");
}

static int property_get_read_path(sd_bus *bus _unused_, const char *path _unused_, const char *interface _unused_,
                                  const char *property _unused_, sd_bus_message *reply, void *userdata,
                                  sd_bus_error *error _unused_) {
        return sd_bus_message_append(reply, "s", mapping_read_path(userdata));
}

static int method_mapping_unmap(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Mapping *m = userdata;

        return bus_method_object_unmap(msg, m->manager, error);
}

static const sd_bus_vtable mapping_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Name", "s", NULL, offsetof(Mapping, name), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Device", "s", property_get_device, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("BackingFile", "s", NULL, offsetof(Mapping, path), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Size", "t", NULL, offsetof(Mapping, options.size), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Offset", "t", NULL, offsetof(Mapping, options.offset), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("SectorSize", "u", NULL, offsetof(Mapping, options.sector_size), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("PartitionScan", "b", property_get_bool, offsetof(Mapping, options.partition_scan),
                        SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("DirectIO", "b", property_get_bool, offsetof(Mapping, direct_io_effective),
                        SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Source", "s", property_get_source, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("State", "s", property_get_state, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("OwnerUID", "u", NULL, offsetof(Mapping, owner_uid), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("CreatedUSec", "t", NULL, offsetof(Mapping, created_usec), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("BytesRead", "t", property_get_counter, 0, 0),
        SD_BUS_PROPERTY("ReadRequests", "t", property_get_counter, 0, 0),
        SD_BUS_PROPERTY("ReadErrors", "t", property_get_counter, 0, 0),
        SD_BUS_PROPERTY("TimedOutReads", "t", property_get_counter, 0, 0),
        SD_BUS_PROPERTY("ReadsInFlight", "u", property_get_reads_in_flight, 0, 0),
        SD_BUS_PROPERTY("ReadLatencyP50USec", "t", property_get_read_latency, 0, 0),
        SD_BUS_PROPERTY("ReadLatencyP90USec", "t", property_get_read_latency, 0, 0),
        SD_BUS_PROPERTY("ReadLatencyP99USec", "t", property_get_read_latency, 0, 0),
        SD_BUS_PROPERTY("ReadLatencyMaxUSec", "t", property_get_read_latency, 0, 0),
        SD_BUS_PROPERTY("CacheHitRatio", "d", property_get_cache_hit_ratio, 0, 0),
        SD_BUS_PROPERTY("KernelReadIOs", "t", property_get_kernel, 0, 0),
        SD_BUS_PROPERTY("KernelReadBytes", "t", property_get_kernel, 0, 0),
        SD_BUS_PROPERTY("KernelInFlight", "u", property_get_kernel, 0, 0),
        SD_BUS_PROPERTY("Timeout", "u", NULL, offsetof(Mapping, options.timeout_sec),
                        SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Stalled", "b", property_get_stalled, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("SourceError", "s", property_get_source_error, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ReadPath", "s", property_get_read_path, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Untrusted", "b", property_get_bool, offsetof(Mapping, options.untrusted),
                        SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("MountPoint", "s", property_get_mount_point, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_METHOD_WITH_ARGS("Unmap", SD_BUS_ARGS("a{sv}", options), SD_BUS_NO_RESULT, method_mapping_unmap,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END,
};

int bus_mapping_register(Manager *manager) {
        int r;

        r = sd_bus_add_fallback_vtable(manager->bus, NULL, FUSELOOP_MAPPING_PATH_PREFIX, FUSELOOP_MAPPING_INTERFACE,
                                       mapping_vtable, find_mapping, manager);
        if (r < 0)
                return r;

        return sd_bus_add_node_enumerator(manager->bus, NULL, FUSELOOP_MAPPING_PATH_PREFIX, enumerate_mappings,
                                          manager);
}

/* A signal lost while the bus is gone is expected (the daemon reconnects); anything else is worth
 * a warning. */
static void log_emit_failure(Mapping *m, const char *what, int r) {
        (void) log_mapping_full_errno(m, r == -ENOTCONN || r == -ECONNRESET ? LOG_DEBUG : LOG_WARNING, r,
                                      "cannot send %s: %m, ignoring", what);
}

void bus_mapping_emit_added(Mapping *m) {
        sd_bus *bus = m->manager->bus;
        char dev[32];
        int r;

        if (!bus)
                return;

        r = sd_bus_emit_object_added(bus, m->object_path);
        if (r < 0)
                log_emit_failure(m, "InterfacesAdded", r);

        r = sd_bus_emit_signal(bus, FUSELOOP_MANAGER_PATH, FUSELOOP_MANAGER_INTERFACE, "MappingAdded", "sos", m->name,
                               m->object_path, mapping_device(m, dev, sizeof(dev)));
        if (r < 0)
                log_emit_failure(m, "MappingAdded", r);
}

void bus_mapping_emit_removed(Mapping *m, const char *reason) {
        sd_bus *bus = m->manager->bus;
        int r;

        if (!bus)
                return;

        r = sd_bus_emit_object_removed(bus, m->object_path);
        if (r < 0)
                log_emit_failure(m, "InterfacesRemoved", r);

        r = sd_bus_emit_signal(bus, FUSELOOP_MANAGER_PATH, FUSELOOP_MANAGER_INTERFACE, "MappingRemoved", "sos",
                               m->name, m->object_path, reason);
        if (r < 0)
                log_emit_failure(m, "MappingRemoved", r);
}

void bus_mapping_emit_changed(Mapping *m, const char *property) {
        int r;

        if (!m->published || !m->manager->bus)
                return;

        r = sd_bus_emit_properties_changed(m->manager->bus, m->object_path, FUSELOOP_MAPPING_INTERFACE, property,
                                           NULL);
        if (r < 0)
                log_emit_failure(m, "PropertiesChanged", r);
}

void mapping_emit_state(Mapping *m) {
        bus_mapping_emit_changed(m, "State");
}
