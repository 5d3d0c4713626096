/* Which job the service manager has queued for our own unit: see service-job.h.
 *
 * Three calls, one after the other, each with the same deadline: GetUnitByPID(our pid) gives the
 * unit's object, its Job property the queued job (id 0: none), the job's JobType the answer. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "service-job.h"

#define SYSTEMD_SERVICE "org.freedesktop.systemd1"

typedef struct Query {
        ServiceJobDone done;
        void *userdata;
        uint64_t timeout_usec;
} Query;

static int query_call(sd_bus *bus, Query *q, const char *path, const char *iface, const char *member,
                      sd_bus_message_handler_t callback, const char *types, ...);

static void query_finish(Query *q, const char *job_type) {
        q->done(job_type, q->userdata);
        free(q);
}

/* Replies carry errors as method errors; any of them means "cannot tell". */
static bool query_failed(Query *q, sd_bus_message *reply, const char *what) {
        const sd_bus_error *e = sd_bus_message_get_error(reply);

        if (!e)
                return false;
        log_debug("Cannot find out our unit's job (%s): %s", what, e->message ?: e->name);
        query_finish(q, NULL);
        return true;
}

static int on_job_type(sd_bus_message *reply, void *userdata, sd_bus_error *error _unused_) {
        Query *q = userdata;
        const char *type;

        if (query_failed(q, reply, "JobType"))
                return 0;
        if (sd_bus_message_enter_container(reply, 'v', "s") < 0 || sd_bus_message_read(reply, "s", &type) < 0)
                type = NULL;
        query_finish(q, type);
        return 0;
}

static int on_unit_job(sd_bus_message *reply, void *userdata, sd_bus_error *error _unused_) {
        Query *q = userdata;
        const char *job_path;
        uint32_t id;

        if (query_failed(q, reply, "Job"))
                return 0;
        if (sd_bus_message_enter_container(reply, 'v', "(uo)") < 0 || sd_bus_message_read(reply, "(uo)", &id, &job_path) < 0 ||
            id == 0) {
                query_finish(q, NULL);
                return 0;
        }
        if (query_call(sd_bus_message_get_bus(reply), q, job_path, "org.freedesktop.DBus.Properties", "Get", on_job_type,
                       "ss", SYSTEMD_SERVICE ".Job", "JobType") < 0)
                query_finish(q, NULL);
        return 0;
}

static int on_unit(sd_bus_message *reply, void *userdata, sd_bus_error *error _unused_) {
        Query *q = userdata;
        const char *unit_path;

        if (query_failed(q, reply, "GetUnitByPID"))
                return 0;
        if (sd_bus_message_read(reply, "o", &unit_path) < 0 ||
            query_call(sd_bus_message_get_bus(reply), q, unit_path, "org.freedesktop.DBus.Properties", "Get", on_unit_job,
                       "ss", SYSTEMD_SERVICE ".Unit", "Job") < 0)
                query_finish(q, NULL);
        return 0;
}

static int query_call(sd_bus *bus, Query *q, const char *path, const char *iface, const char *member,
                      sd_bus_message_handler_t callback, const char *types, ...) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *msg = NULL;
        va_list ap;
        int r;

        r = sd_bus_message_new_method_call(bus, &msg, SYSTEMD_SERVICE, path, iface, member);
        if (r < 0)
                return r;
        /* Never start a systemd1 "service" (some buses have an activation file for it). */
        r = sd_bus_message_set_auto_start(msg, false);
        if (r < 0)
                return r;
        va_start(ap, types);
        r = sd_bus_message_appendv(msg, types, ap);
        va_end(ap);
        if (r < 0)
                return r;
        /* A floating slot: the reply (or the timeout) always comes, and ends the query. */
        return sd_bus_call_async(bus, NULL, msg, callback, q, q->timeout_usec);
}

int service_job_query(sd_bus *bus, uint64_t timeout_usec, ServiceJobDone done, void *userdata) {
        Query *q;
        int r;

        q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        *q = (Query) { .done = done, .userdata = userdata, .timeout_usec = timeout_usec };

        r = query_call(bus, q, "/org/freedesktop/systemd1", SYSTEMD_SERVICE ".Manager", "GetUnitByPID", on_unit, "u",
                       (uint32_t) getpid());
        if (r < 0)
                free(q);
        return r;
}
