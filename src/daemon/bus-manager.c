/* The org.proxmox.FuseLoop1 manager object: Map, MapURI, Unmap, List and the ObjectManager. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus-mapping.h"
#include "bus-names.h"
#include "log.h"
#include "macro.h"
#include "mapping.h"
#include "polkit.h"
#include "source-nbd.h"
#include "util.h"

/* Quotes at most this much of a bad input in an error message ('%.*s', QUOTE(s)), not cutting a
 * character in two: an error message must be valid UTF-8 to be sent at all. */
#define QUOTE_MAX 160
#define QUOTE(s) (int) utf8_prefix_len((s), QUOTE_MAX), (s)

static int reply_invalid_name(sd_bus_error *error, const char *name) {
        return sd_bus_error_setf(error, FUSELOOP_ERROR_INVALID_NAME,
                                 "Invalid mapping name '%.*s'%s: use 1-%u characters of A-Z a-z 0-9 . _ : @ + -, "
                                 "not starting with '.'.",
                                 QUOTE(name), strlen(name) > QUOTE_MAX ? "..." : "", FUSELOOP_NAME_MAX);
}

static unsigned mappings_owned_by(Manager *manager, uid_t uid) {
        unsigned n = 0;

        for (Mapping *m = manager->mappings; m; m = m->next)
                if (m->owner_uid == uid)
                        n++;
        return n;
}

/* Checks what Map and MapURI share, reads the options and creates the mapping. */
static int map_common(Manager *manager, sd_bus_message *msg, sd_bus_message_handler_t handler, const char *name,
                      int fd, const char *uri_path, sd_bus_error *error) {
        _cleanup_(map_options_done) MapOptions o = MAP_OPTIONS_INIT;
        _cleanup_(closep) int dfd = -EBADF;
        Mapping *m, *existing;
        AuthRequest req = {
                .action = uri_path ? FUSELOOP_POLKIT_MAP_URI : FUSELOOP_POLKIT_MAP,
                .what = uri_path ? "map files by path" : "map file descriptors",
                .owner = (uid_t) -1,
                .details = { "name", name, uri_path ? (nbd_uri_is_nbd(uri_path) ? "uri" : "path") : NULL, uri_path,
                             NULL },
        };
        bool nbd;
        uid_t uid;
        int r;

        r = manager_defer_call(manager, msg, handler);
        if (r != 0)
                return r;

        if (!mapping_name_is_valid(name))
                return reply_invalid_name(error, name);

        r = bus_read_options(msg, (OptionSetter) map_options_set, &o, error);
        if (r < 0)
                return r;

        /* An URI says what it is; only an fd needs the protocol, and only NBD has exports. */
        nbd = uri_path ? nbd_uri_is_nbd(uri_path) : streq_ptr(o.protocol, "nbd");
        if (uri_path && o.protocol && streq(o.protocol, "nbd") != nbd)
                return sd_bus_error_setf(error, FUSELOOP_ERROR_INVALID_OPTION,
                                         "Option 'protocol' is '%s', but the URI names a %s.", o.protocol,
                                         nbd ? "NBD server" : "file");
        if (o.export_name && (!nbd || uri_path))
                return sd_bus_error_set(error, FUSELOOP_ERROR_INVALID_OPTION,
                                        nbd ? "Option 'export-name' is for an fd with protocol 'nbd'; an URI names "
                                              "its export itself (nbd://host/EXPORT)." :
                                              "Option 'export-name' needs option 'protocol' set to 'nbd'.");

        r = polkit_authorize(manager, msg, &req, handler, manager, &uid, error);
        if (r <= 0)
                return r < 0 ? r : 1;

        if (manager->shutting_down || manager->handing_over || manager->stop_query_pending)
                return sd_bus_error_set(error, FUSELOOP_ERROR_SETUP_FAILED, "fuseloopd is stopping; call again.");

        if (manager->n_mappings >= FUSELOOP_MAPPINGS_MAX)
                return sd_bus_error_setf(error, FUSELOOP_ERROR_NO_FREE_LOOP,
                                         "fuseloopd serves at most %u mappings; unmap one first.", FUSELOOP_MAPPINGS_MAX);

        if (uid != 0) {
                unsigned n = mappings_owned_by(manager, uid);

                if (n >= manager->user_quota)
                        return sd_bus_error_setf(error, FUSELOOP_ERROR_QUOTA_EXCEEDED,
                                                 "uid %u has %u mapping%s, the most fuseloopd allows a user "
                                                 "(--max-mappings-per-user=%u); unmap one first.",
                                                 (unsigned) uid, n, n == 1 ? "" : "s", manager->user_quota);
        }

        existing = manager_find_mapping(manager, name);
        if (existing) {
                char dev[32];

                return sd_bus_error_setf(error, FUSELOOP_ERROR_ALREADY_MAPPED,
                                         "A mapping named '%s' already exists (%s, %s).", name,
                                         mapping_device(existing, dev, sizeof(dev))[0] ? dev : "no device yet",
                                         mapping_state_to_string(existing->state));
        }

        if (fd >= 0) {
                /* The message keeps its own fd; ours must outlive it. */
                dfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
                if (dfd < 0)
                        return sd_bus_error_setf(error, FUSELOOP_ERROR_INVALID_SOURCE,
                                                 "Cannot use the source file descriptor: %s.", strerror(errno));
        }

        r = mapping_new(manager, name, dfd, uri_path, &o, uid, &m);
        if (r < 0)
                return r;
        TAKE_FD(dfd);

        mapping_start(m, msg, sd_bus_message_get_sender(msg));
        return 1;
}

static int method_map(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        const char *name;
        int fd, r;

        r = sd_bus_message_read(msg, "sh", &name, &fd);
        if (r < 0)
                return r;

        return map_common(userdata, msg, method_map, name, fd, NULL, error);
}

static int method_map_uri(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(freep) char *path = NULL;
        const char *name, *uri;
        int r;

        r = sd_bus_message_read(msg, "ss", &name, &uri);
        if (r < 0)
                return r;

        if (!mapping_name_is_valid(name))
                return reply_invalid_name(error, name);

        if (nbd_uri_is_nbd(uri)) {
                /* libnbd parses the rest when it connects, and says what is wrong with it. */
                if (strlen(uri) >= PATH_MAX || !utf8_is_valid(uri))
                        return sd_bus_error_setf(error, FUSELOOP_ERROR_INVALID_SOURCE,
                                                 "Invalid NBD URI '%.*s': too long or not UTF-8.", QUOTE(uri));
                if (startswith(uri, "nbds") && !nbd_uri_tls_supported())
                        return sd_bus_error_setf(error, FUSELOOP_ERROR_INVALID_SOURCE,
                                                 "Cannot map '%.*s': this libnbd was built without TLS.", QUOTE(uri));
                return map_common(userdata, msg, method_map_uri, name, -EBADF, uri, error);
        }

        r = uri_to_path(uri, &path);
        if (r == -ENOMEM)
                return r;
        if (r == -EPROTONOSUPPORT)
                return sd_bus_error_setf(error, FUSELOOP_ERROR_INVALID_SOURCE,
                                         "Unsupported source URI '%.*s': use an absolute path, file:///path, "
                                         "nbd://host[:port]/export or nbd+unix:///export?socket=PATH.",
                                         QUOTE(uri));
        if (r < 0)
                return sd_bus_error_setf(error, FUSELOOP_ERROR_INVALID_SOURCE,
                                         "Invalid source '%.*s': use an absolute path or file:///path, without "
                                         "empty, '.' or '..' components, that is valid UTF-8 once decoded.",
                                         QUOTE(uri));

        return map_common(userdata, msg, method_map_uri, name, -EBADF, path, error);
}

/* Unmaps what (a name or "/dev/loopN"); handler is the method to run again after authorization. */
static int unmap_common(Manager *manager, sd_bus_message *msg, sd_bus_message_handler_t handler, const char *what,
                        sd_bus_error *error) {
        UnmapOptions o = {};
        AuthRequest req;
        char owner[16];
        bool by_device;
        Mapping *m;
        int r;

        r = bus_read_options(msg, (OptionSetter) unmap_options_set, &o, error);
        if (r < 0)
                return r;

        by_device = startswith(what, "/dev/");
        if (!by_device && !mapping_name_is_valid(what))
                return reply_invalid_name(error, what);

        m = by_device ? manager_find_mapping_by_device(manager, what) : manager_find_mapping(manager, what);
        if (!m) {
                if (by_device)
                        return sd_bus_error_setf(error, FUSELOOP_ERROR_NOT_FOUND, "No mapping uses '%.*s'.", QUOTE(what));
                return sd_bus_error_setf(error, FUSELOOP_ERROR_NOT_FOUND, "No mapping named '%s'.", what);
        }

        /* The owner may unmap without asking; everyone else needs unmap-other. */
        (void) snprintf(owner, sizeof(owner), "%u", (unsigned) m->owner_uid);
        req = (AuthRequest) {
                .action = FUSELOOP_POLKIT_UNMAP_OTHER,
                .what = "unmap mappings made by other users",
                .owner = m->owner_uid,
                .scope = m->created_usec,
                .details = { "name", m->name, "owner", owner, NULL },
        };
        r = polkit_authorize(manager, msg, &req, handler, manager, NULL, error);
        if (r <= 0)
                return r < 0 ? r : 1;

        mapping_unmap(m, o.lazy, msg, FUSELOOP_REASON_UNMAPPED);
        return 1;
}

static int method_unmap(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        const char *what;
        int r;

        r = sd_bus_message_read(msg, "s", &what);
        if (r < 0)
                return r;

        return unmap_common(userdata, msg, method_unmap, what, error);
}

int bus_method_object_unmap(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(freep) char *name = NULL;
        int r;

        /* The mapping is named by the object path, so this also works when it runs again after
         * authorization, by which time the mapping may be gone. */
        r = sd_bus_path_decode(sd_bus_message_get_path(msg), FUSELOOP_MAPPING_PATH_PREFIX, &name);
        if (r < 0)
                return r;
        if (r == 0)
                return sd_bus_error_setf(error, FUSELOOP_ERROR_NOT_FOUND, "No mapping at '%s'.",
                                         sd_bus_message_get_path(msg));

        return unmap_common(userdata, msg, bus_method_object_unmap, name, error);
}

static int method_list(sd_bus_message *msg, void *userdata, sd_bus_error *error _unused_) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Manager *manager = userdata;
        int r;

        r = sd_bus_message_new_method_return(msg, &reply);
        if (r < 0)
                return r;

        r = sd_bus_message_open_container(reply, 'a', "(sossts)");
        if (r < 0)
                return r;

        for (Mapping *m = manager->mappings; m; m = m->next) {
                char dev[32];

                if (!m->published)
                        continue;

                r = sd_bus_message_append(reply, "(sossts)", m->name, m->object_path, mapping_device(m, dev, sizeof(dev)),
                                          mapping_state_to_string(m->state), m->options.size,
                                          m->source_description ?: "");
                if (r < 0)
                        return r;
        }

        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;

        return sd_bus_send(NULL, reply, NULL);
}

static const sd_bus_vtable manager_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD_WITH_ARGS("Map",
                                SD_BUS_ARGS("s", name, "h", source, "a{sv}", options),
                                SD_BUS_RESULT("o", mapping, "s", device),
                                method_map, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("MapURI",
                                SD_BUS_ARGS("s", name, "s", uri, "a{sv}", options),
                                SD_BUS_RESULT("o", mapping, "s", device),
                                method_map_uri, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Unmap",
                                SD_BUS_ARGS("s", name_or_device, "a{sv}", options),
                                SD_BUS_NO_RESULT,
                                method_unmap, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("List",
                                SD_BUS_NO_ARGS,
                                SD_BUS_RESULT("a(sossts)", mappings),
                                method_list, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_ARGS("MappingAdded", SD_BUS_ARGS("s", name, "o", mapping, "s", device), 0),
        SD_BUS_SIGNAL_WITH_ARGS("MappingRemoved", SD_BUS_ARGS("s", name, "o", mapping, "s", reason), 0),
        SD_BUS_VTABLE_END,
};

int bus_manager_register(Manager *manager) {
        int r;

        r = sd_bus_add_object_vtable(manager->bus, NULL, FUSELOOP_MANAGER_PATH, FUSELOOP_MANAGER_INTERFACE,
                                     manager_vtable, manager);
        if (r < 0)
                return r;

        return sd_bus_add_object_manager(manager->bus, NULL, FUSELOOP_MANAGER_PATH);
}
