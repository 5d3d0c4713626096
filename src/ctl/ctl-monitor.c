/* fuseloopctl monitor and wait: following the daemon's signals as they come. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <systemd/sd-event.h>

#include "bus-names.h"
#include "ctl.h"
#include "util.h"

#define MATCH_SIGNAL_FROM_DAEMON "type='signal',sender='" FUSELOOP_BUS_NAME "'"
#define MATCH_MANAGER MATCH_SIGNAL_FROM_DAEMON ",path='" FUSELOOP_MANAGER_PATH "',interface='" \
        FUSELOOP_MANAGER_INTERFACE "'"
#define MATCH_PROPERTIES MATCH_SIGNAL_FROM_DAEMON ",interface='org.freedesktop.DBus.Properties'," \
        "member='PropertiesChanged',path_namespace='" FUSELOOP_MAPPING_PATH_PREFIX "',arg0='" \
        FUSELOOP_MAPPING_INTERFACE "'"
#define MATCH_OWNER "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus'," \
        "interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='" FUSELOOP_BUS_NAME "'"

static int add_matches(sd_bus *bus, sd_bus_message_handler_t handler, void *userdata) {
        static const char *const matches[] = { MATCH_MANAGER, MATCH_PROPERTIES, MATCH_OWNER };
        int r;

        /* sd_bus_add_match() waits for the bus to confirm each: once it returns, no signal is
         * missed, so what is read afterwards cannot be out of date. */
        for (size_t i = 0; i < ELEMENTSOF(matches); i++) {
                r = sd_bus_add_match(bus, NULL, matches[i], handler, userdata);
                if (r < 0)
                        return error_errno(r, "failed to subscribe to the daemon's signals: %m");
        }
        return 0;
}

/* ---------------------------------------------------------------------------------- monitor -- */

/* Prints one event: a line for people, or a JSON object per line. Strings may be NULL. */
static int monitor_print(const char *event, const char *name, const char *key, const char *value, int flag) {
        struct timespec ts;
        uint64_t usec;

        (void) clock_gettime(CLOCK_REALTIME, &ts);
        usec = (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;

        if (arg_json != JSON_OFF) {
                json_object *o = json_object_new_object();
                int r = 0;

                if (!o)
                        return -ENOMEM;
                r = r ?: json_add_u64(o, "time_usec", usec);
                r = r ?: json_add_string(o, "event", event);
                if (name)
                        r = r ?: json_add_string(o, "name", name);
                if (key && value)
                        r = r ?: json_add_string(o, key, value);
                if (key && !value)
                        r = r ?: json_add_bool(o, key, flag);
                if (r < 0) {
                        json_object_put(o);
                        return r;
                }
                return json_print(o);
        } else {
                char when[64];
                struct tm tm;
                time_t t = ts.tv_sec;

                if (!localtime_r(&t, &tm) || strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm) == 0)
                        (void) strcpy(when, "-");
                printf("%s %-8s %s", when, event, name ?: "");
                if (key && value)
                        printf(" %s=%s", key, value);
                else if (key)
                        printf(" %s=%s", key, yes_no(flag));
                printf("\n");
        }
        return 0;
}

static int on_monitor_signal(sd_bus_message *m, void *userdata, sd_bus_error *ret_error _unused_) {
        sd_event *event = userdata;
        const char *member = sd_bus_message_get_member(m);
        int r = 0;

        if (streq_ptr(member, "MappingAdded")) {
                const char *name, *path, *device;

                if (sd_bus_message_read(m, "sos", &name, &path, &device) < 0)
                        return 0;
                r = monitor_print("added", name, "device", device, 0);
        } else if (streq_ptr(member, "MappingRemoved")) {
                const char *name, *path, *reason;

                if (sd_bus_message_read(m, "sos", &name, &path, &reason) < 0)
                        return 0;
                r = monitor_print("removed", name, "reason", reason, 0);
        } else if (streq_ptr(member, "PropertiesChanged")) {
                _cleanup_(freep) char *name = NULL;
                MappingStatus st = MAPPING_STATUS_INIT;

                st.stalled = -1;
                if (sd_bus_path_decode(sd_bus_message_get_path(m), FUSELOOP_MAPPING_PATH_PREFIX, &name) <= 0 ||
                    sd_bus_message_skip(m, "s") < 0 || status_parse(m, &st) < 0)
                        return 0;
                if (st.state)
                        r = monitor_print("state", name, "state", st.state, 0);
                if (r >= 0 && st.stalled >= 0)
                        r = monitor_print("stalled", name, "stalled", NULL, st.stalled);
        } else if (streq_ptr(member, "NameOwnerChanged")) {
                const char *bus_name, *old_owner, *new_owner;

                if (sd_bus_message_read(m, "sss", &bus_name, &old_owner, &new_owner) < 0)
                        return 0;
                r = monitor_print("daemon", NULL, "running", NULL, !isempty(new_owner));
        }

        /* Nobody reads what we write any more (a closed pipe): stop. */
        if (r < 0 || fflush(stdout) != 0)
                (void) sd_event_exit(event, r < 0 ? r : -EPIPE);
        return 0;
}

/* The mappings there are when monitoring starts, as "present" events, so that a reader knows
 * where it starts from and that the subscription is in place. Does not start the daemon. */
static int monitor_snapshot(sd_bus *bus) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        MappingStatus st;
        const char *path;
        int has_owner = 0, r;

        r = sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                               "NameHasOwner", &error, &reply, "s", FUSELOOP_BUS_NAME);
        if (r < 0)
                return bus_error_report(&error, r, NULL, "failed to ask the bus for the daemon");
        r = sd_bus_message_read(reply, "b", &has_owner);
        if (r < 0)
                return bus_parse_error(r);
        reply = sd_bus_message_unref(reply);

        r = monitor_print("daemon", NULL, "running", NULL, has_owner);
        if (r < 0 || !has_owner)
                return r;

        r = mappings_get(bus, &reply);
        if (r < 0)
                return r;

        while ((r = mappings_next(reply, &path, &st)) > 0) {
                if (isempty(st.name))
                        continue;
                r = monitor_print("present", st.name, "device", empty_to_dash(st.device), 0);
                if (r >= 0)
                        r = monitor_print("state", st.name, "state", empty_to_dash(st.state), 0);
                if (r < 0)
                        return r;
        }
        return r;
}

int verb_monitor(char **args _unused_) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        sigset_t mask;
        int r;

        /* Each event reaches a reader of a pipe at once. */
        (void) setvbuf(stdout, NULL, _IOLBF, 0);

        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return error_errno(errno, "failed to block signals: %m");

        r = sd_event_default(&event);
        if (r < 0)
                return error_errno(r, "failed to create an event loop: %m");
        r = sd_event_add_signal(event, NULL, SIGINT, NULL, NULL);
        if (r >= 0)
                r = sd_event_add_signal(event, NULL, SIGTERM, NULL, NULL);
        if (r < 0)
                return error_errno(r, "failed to watch signals: %m");

        r = bus_connect(&bus);
        if (r < 0)
                return r;

        r = add_matches(bus, on_monitor_signal, event);
        if (r < 0)
                return r;

        r = monitor_snapshot(bus);
        if (r < 0)
                return r == -ENOMEM ? error_errno(r, "out of memory") : r;
        if (fflush(stdout) != 0)
                return 0;

        r = sd_bus_attach_event(bus, event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return error_errno(r, "failed to attach the bus to the event loop: %m");
        /* Without the bus there is nothing more to report: end, and say so. */
        r = sd_bus_set_exit_on_disconnect(bus, true);
        if (r < 0)
                return error_errno(r, "failed to watch the bus connection: %m");

        /* Until SIGINT or SIGTERM (their default handlers end the loop), or a failed write. */
        r = sd_event_loop(event);
        if (r == -EPIPE)
                return 0;
        /* sd-bus ends the loop with EXIT_FAILURE when the connection goes; our signals end it
         * with 0. */
        if (r > 0)
                return error_errno(ECONNRESET, "lost the connection to the system bus");
        if (r < 0)
                return error_errno(r, "monitoring failed: %m");
        return 0;
}

/* ------------------------------------------------------------------------------------- wait -- */

typedef struct WaitState {
        bool recheck;
} WaitState;

static int on_wait_signal(sd_bus_message *m _unused_, void *userdata, sd_bus_error *ret_error _unused_) {
        WaitState *w = userdata;

        /* Whatever happened, asking again is simplest and cannot be wrong. */
        w->recheck = true;
        return 0;
}

/* Looks at the mapping: 1 when what we wait for is the case, 0 when not yet, or -errno after
 * reporting it (a mapping that failed while we wait for it to be active). */
static int wait_check(sd_bus *bus, const char *path, const char *name) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *state;
        int r;

        r = sd_bus_get_property(bus, FUSELOOP_BUS_NAME, path, FUSELOOP_MAPPING_INTERFACE, "State", &error,
                                &reply, "s");
        if (r < 0) {
                if (sd_bus_error_has_name(&error, SD_BUS_ERROR_UNKNOWN_OBJECT) ||
                    sd_bus_error_has_name(&error, SD_BUS_ERROR_UNKNOWN_INTERFACE) ||
                    sd_bus_error_has_name(&error, SD_BUS_ERROR_UNKNOWN_PROPERTY))
                        return arg_wait_removed;
                return bus_error_report(&error, r, NULL, "failed to get the state of '%s'", name);
        }
        r = sd_bus_message_read(reply, "s", &state);
        if (r < 0)
                return bus_parse_error(r);

        if (arg_wait_removed)
                return 0;
        if (streq(state, "failed"))
                return error_errno(EIO, "mapping '%s' failed", name);
        return streq(state, "active");
}

int verb_wait(char **args) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(freep) char *path = NULL;
        const char *name = args[0];
        WaitState w = { .recheck = true };
        struct timespec ts;
        uint64_t deadline = UINT64_MAX;
        int r;

        if (!mapping_name_is_valid(name)) {
                exit_code_set(EXIT_USAGE);
                return error_errno(EINVAL, "'%s' is not a valid mapping name", name);
        }

        r = sd_bus_path_encode(FUSELOOP_MAPPING_PATH_PREFIX, name, &path);
        if (r < 0)
                return error_errno(r, "failed to build the object path of '%s': %m", name);

        if (arg_wait_timeout_usec != UINT64_MAX && clock_gettime(CLOCK_MONOTONIC, &ts) >= 0)
                deadline = (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000 + arg_wait_timeout_usec;

        r = bus_connect(&bus);
        if (r < 0)
                return r;

        r = add_matches(bus, on_wait_signal, &w);
        if (r < 0)
                return r;

        for (;;) {
                uint64_t now, left = UINT64_MAX;

                if (w.recheck) {
                        w.recheck = false;
                        r = wait_check(bus, path, name);
                        if (r != 0)
                                return r < 0 ? r : 0;
                }

                r = sd_bus_process(bus, NULL);
                if (r < 0)
                        return error_errno(r, "failed to process bus messages: %m");
                if (r > 0)
                        continue;

                if (deadline != UINT64_MAX) {
                        if (clock_gettime(CLOCK_MONOTONIC, &ts) < 0)
                                return error_errno(errno, "failed to read the clock: %m");
                        now = (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
                        if (now >= deadline) {
                                exit_code_set(EXIT_TIMEOUT);
                                return error_errno(ETIMEDOUT, "'%s' did not %s within %" PRIu64 " s", name,
                                                   arg_wait_removed ? "go away" : "become active",
                                                   arg_wait_timeout_usec / 1000000);
                        }
                        left = deadline - now;
                }

                r = sd_bus_wait(bus, left);
                if (r < 0 && r != -EINTR)
                        return error_errno(r, "failed to wait for the bus: %m");
        }
}
