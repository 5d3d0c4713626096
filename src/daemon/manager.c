/* The daemon's state: the event loop, the bus connection, the worker, the io ring, the udev
 * monitor and every mapping. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "bus-names.h"
#include "fd-store.h"
#include "log.h"
#include "macro.h"
#include "manager.h"
#include "mapping.h"
#include "polkit.h"
#include "run-dir.h"
#include "service-job.h"
#include "util.h"

#define RECONNECT_MAX_USEC (10ULL * 1000000ULL)
#define USEC_PER_SEC 1000000ULL
/* How long SIGTERM waits for systemd to say whether a restart is queued. */
#define STOP_QUERY_TIMEOUT_USEC (2ULL * USEC_PER_SEC)
/* How long a restart waits for reads in flight before it leaves them to the next instance. */
#define HAND_OVER_DRAIN_USEC (5ULL * USEC_PER_SEC)

typedef struct DeferredCall {
        struct DeferredCall *next;
        sd_bus_message *call;
        sd_bus_message_handler_t handler;
} DeferredCall;

static void on_block_event(const char *action, dev_t devnum, uint64_t seqnum, void *userdata) {
        Manager *m = userdata;
        Mapping *next;

        /* A handler may remove its mapping: keep the next one first. */
        for (Mapping *i = m->mappings; i; i = next) {
                next = i->next;
                mapping_on_block_event(i, action, devnum, seqnum);
        }
}

/* Stops for good: unmaps everything (busy mappings lazily) and exits once all are gone. */
static void manager_shutdown(Manager *m) {
        Mapping *next;

        log_info("Unmapping everything.");
        m->shutting_down = true;
        (void) sd_notify(false, "STOPPING=1");

        for (Mapping *i = m->mappings; i; i = next) {
                next = i->next;
                mapping_shutdown(i);
        }

        manager_update_status(m);
}

/* A restart can leave the mappings to the next instance when every one of them is in the fd
 * store and settled (no job running, nothing being set up). */
static bool manager_can_hand_over(Manager *m) {
        if (!m->bus || !m->ready || !fd_store_available() || m->n_mappings == 0)
                return false;
        for (Mapping *i = m->mappings; i; i = i->next)
                if (!mapping_can_hand_over(i))
                        return false;
        return true;
}

static int on_hand_over_timeout(sd_event_source *s _unused_, uint64_t usec _unused_, void *userdata) {
        Manager *m = userdata;

        log_warning("%u mapping%s still wait for their source; leaving their reads to the next instance.", m->n_mappings,
                    m->n_mappings == 1 ? "" : "s");
        (void) sd_event_exit(m->event, 0);
        return 0;
}

/* Exits leaving every mapping to the next instance: the service manager keeps their fds, so the
 * FUSE connections and loop devices stay; requests that arrive meanwhile wait in the kernel. */
static void manager_hand_over(Manager *m) {
        Mapping *next;

        log_info("A restart of fuseloopd is queued: leaving %u mapping%s to the next instance through the fd store.",
                 m->n_mappings, m->n_mappings == 1 ? "" : "s");
        m->handing_over = true;
        (void) sd_notifyf(false, "STOPPING=1\nSTATUS=Restarting; %u mapping%s kept in the fd store.", m->n_mappings,
                          m->n_mappings == 1 ? "" : "s");
        for (Mapping *i = m->mappings; i; i = next) {
                next = i->next;
                mapping_hand_over(i);
        }
        manager_update_status(m);

        /* Reads a stalled source holds: the kernel sends them to the next instance anyway
         * (FUSE_NOTIFY_RESEND), so do not wait for them long. */
        if (m->n_mappings > 0 &&
            sd_event_add_time_relative(m->event, &m->stop_timer, CLOCK_MONOTONIC, HAND_OVER_DRAIN_USEC, 0,
                                       on_hand_over_timeout, m) < 0)
                (void) sd_event_exit(m->event, 0);
}

static void on_stop_job(const char *job_type, void *userdata) {
        Manager *m = userdata;

        if (!m->stop_query_pending)
                return;  /* too late: the stop went on without the answer */
        m->stop_query_pending = false;
        m->stop_timer = sd_event_source_disable_unref(m->stop_timer);

        if (job_type && (streq(job_type, "restart") || streq(job_type, "try-restart")) && manager_can_hand_over(m))
                manager_hand_over(m);
        else {
                log_debug("Queued job of our unit: %s.", job_type ?: "none known");
                manager_shutdown(m);
        }
}

static int on_stop_query_timeout(sd_event_source *s _unused_, uint64_t usec _unused_, void *userdata) {
        Manager *m = userdata;

        log_warning("The service manager did not say in time whether this is a restart; stopping for good.");
        m->stop_query_pending = false;
        m->stop_timer = sd_event_source_disable_unref(m->stop_timer);
        manager_shutdown(m);
        return 0;
}

static int on_signal(sd_event_source *s _unused_, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;
        int r;

        if (m->shutting_down || m->handing_over || m->stop_query_pending) {
                log_info("Received %s again; still stopping.", strsignal((int) si->ssi_signo));
                return 0;
        }
        log_info("Received %s.", strsignal((int) si->ssi_signo));

        /* SIGTERM from the service manager is either a stop or the first half of a restart; only
         * its queued job tells which. SIGINT is always a stop. */
        if (si->ssi_signo == SIGTERM && manager_can_hand_over(m)) {
                r = service_job_query(m->bus, STOP_QUERY_TIMEOUT_USEC, on_stop_job, m);
                if (r >= 0)
                        r = sd_event_add_time_relative(m->event, &m->stop_timer, CLOCK_MONOTONIC,
                                                       STOP_QUERY_TIMEOUT_USEC + USEC_PER_SEC / 2, 0,
                                                       on_stop_query_timeout, m);
                if (r >= 0) {
                        m->stop_query_pending = true;
                        return 0;
                }
                log_warning_errno(r, "Cannot ask the service manager whether this is a restart: %m; stopping for good.");
        }

        manager_shutdown(m);
        return 0;
}

int manager_new(const char *run_dir, Manager **ret) {
        char *canonical;
        Manager *m;
        sigset_t mask;
        int r;

        m = calloc(1, sizeof(*m));
        if (!m)
                return log_oom();

        m->run_dir_lock = -EBADF;
        m->idle_timeout_usec = FUSELOOP_DEFAULT_IDLE_TIMEOUT_SEC * USEC_PER_SEC;
        m->user_quota = FUSELOOP_DEFAULT_USER_QUOTA;

        m->run_dir = strdup(run_dir);
        if (!m->run_dir) {
                r = log_oom();
                goto fail;
        }

        r = sd_event_default(&m->event);
        if (r < 0) {
                log_error_errno(r, "Failed to create the event loop: %m");
                goto fail;
        }

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        (void) sigprocmask(SIG_BLOCK, &mask, NULL);
        (void) signal(SIGPIPE, SIG_IGN);

        r = sd_event_add_signal(m->event, NULL, SIGTERM, on_signal, m);
        if (r >= 0)
                r = sd_event_add_signal(m->event, NULL, SIGINT, on_signal, m);
        if (r < 0) {
                log_error_errno(r, "Failed to set up signal handling: %m");
                goto fail;
        }

        r = worker_new(m->event, &m->worker);
        if (r < 0) {
                log_error_errno(r, "Failed to set up the worker: %m");
                goto fail;
        }

        r = io_ring_new(m->event, &m->ring);
        if (r < 0) {
                log_error_errno(r, "Failed to set up io_uring: %m");
                goto fail;
        }

        r = block_monitor_new(m->event, on_block_event, m, &m->monitor);
        if (r < 0) {
                log_error_errno(r, "Failed to set up the udev monitor: %m");
                goto fail;
        }

        r = run_dir_prepare(m->run_dir);
        if (r < 0)
                goto fail;

        /* The kernel names backing files by their canonical path; ours must compare equal. */
        canonical = realpath(m->run_dir, NULL);
        if (!canonical) {
                r = log_error_errno(errno, "Failed to resolve the run directory '%s': %m", m->run_dir);
                goto fail;
        }
        free(m->run_dir);
        m->run_dir = canonical;

        /* From here on no other instance touches the run directory, its loop devices or the fd
         * store's mappings: the start-up clean-up needs no bus name to be safe. */
        m->run_dir_lock = run_dir_lock(m->run_dir);
        if (m->run_dir_lock < 0) {
                r = m->run_dir_lock;
                goto fail;
        }

        *ret = m;
        return 0;

fail:
        manager_free(m);
        return r;
}

/* Refuses every deferred call with error (or drops them without reply when NULL). */
static void manager_flush_deferred(Manager *m, const sd_bus_error *error) {
        while (m->deferred) {
                DeferredCall *d = m->deferred;

                m->deferred = d->next;
                if (error)
                        (void) sd_bus_reply_method_error(d->call, error);
                sd_bus_message_unref(d->call);
                free(d);
        }
}

Manager *manager_free(Manager *m) {
        const sd_bus_error exiting = SD_BUS_ERROR_MAKE_CONST(FUSELOOP_ERROR_SETUP_FAILED,
                                                             "fuseloopd is exiting; call again.");

        if (!m)
                return NULL;

        /* Mappings are gone by now (manager_run() returns only then), unless start-up failed
         * before any existed. */
        sd_event_source_disable_unref(m->reconnect_timer);
        sd_event_source_disable_unref(m->idle_timer);
        sd_event_source_disable_unref(m->stop_timer);
        sd_bus_slot_unref(m->idle_slot);
        manager_flush_deferred(m, &exiting);
        polkit_flush(m, &exiting);
        sd_bus_flush_close_unref(m->bus);
        block_monitor_free(m->monitor);
        io_ring_free(m->ring);
        worker_free(m->worker);
        sd_event_unref(m->event);
        (void) safe_close(m->run_dir_lock);
        free(m->run_dir);
        free(m);
        return NULL;
}

static int manager_connect_bus(Manager *m);

void manager_rerun_call(sd_bus_message *call, sd_bus_message_handler_t handler, void *userdata) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        sd_bus_message_ref(call);
        r = sd_bus_message_rewind(call, true);
        if (r >= 0)
                r = handler(call, userdata, &error);
        if (r < 0) {
                if (sd_bus_error_is_set(&error))
                        (void) sd_bus_reply_method_error(call, &error);
                else
                        (void) sd_bus_reply_method_errno(call, r, NULL);
        }
        sd_bus_message_unref(call);
}

int manager_defer_call(Manager *m, sd_bus_message *call, sd_bus_message_handler_t handler) {
        DeferredCall *d, **tail;

        if (!m->idle_exiting)
                return 0;

        /* Serving it now could create a mapping while the name goes away. */
        d = calloc(1, sizeof(*d));
        if (!d)
                return -ENOMEM;
        d->call = sd_bus_message_ref(call);
        d->handler = handler;
        for (tail = &m->deferred; *tail; tail = &(*tail)->next)
                ;
        *tail = d;
        return 1;
}

static int on_idle_timer(sd_event_source *s, uint64_t usec, void *userdata);

/* (Re)starts the idle countdown: called for every incoming call and when the last mapping went. */
static void manager_arm_idle_timer(Manager *m) {
        uint64_t now;
        int r;

        if (m->idle_timeout_usec == 0 || !m->ready || m->shutting_down || m->idle_exiting)
                return;

        r = sd_event_now(m->event, CLOCK_MONOTONIC, &now);
        if (r < 0)
                return;

        if (m->idle_timer) {
                r = sd_event_source_set_time(m->idle_timer, now + m->idle_timeout_usec);
                if (r >= 0)
                        r = sd_event_source_set_enabled(m->idle_timer, SD_EVENT_ONESHOT);
        } else
                r = sd_event_add_time(m->event, &m->idle_timer, CLOCK_MONOTONIC, now + m->idle_timeout_usec,
                                      USEC_PER_SEC / 10, on_idle_timer, m);
        if (r < 0)
                log_warning_errno(r, "Failed to arm the idle timer: %m, ignoring");
}

static int on_bus_message(sd_bus_message *msg, void *userdata, sd_bus_error *error _unused_) {
        Manager *m = userdata;
        uint8_t type;

        if (sd_bus_message_get_type(msg, &type) >= 0 && type == SD_BUS_MESSAGE_METHOD_CALL)
                manager_arm_idle_timer(m);
        return 0;  /* let it be dispatched */
}

static void manager_idle_exit(Manager *m) {
        log_info("No mappings and no calls for %" PRIu64 " s, exiting.", m->idle_timeout_usec / (uint64_t) USEC_PER_SEC);
        (void) sd_notify(false, "STOPPING=1\nSTATUS=Idle, exiting.");
        (void) sd_event_exit(m->event, 0);
}

static int on_name_taken_back(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error _unused_) {
        Manager *m = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        uint32_t ret = 0;

        m->idle_slot = sd_bus_slot_unref(m->idle_slot);
        if (e || sd_bus_message_read(reply, "u", &ret) < 0 || (ret != 1 && ret != 4)) {
                const sd_bus_error refused = SD_BUS_ERROR_MAKE_CONST(
                        FUSELOOP_ERROR_SETUP_FAILED, "fuseloopd was exiting for idleness and another instance took "
                                                     "over; call again.");

                log_warning("Cannot take the bus name %s back after releasing it for idleness: %s.", FUSELOOP_BUS_NAME,
                            e ? e->message : "owned by another instance");
                manager_flush_deferred(m, &refused);
                manager_idle_exit(m);  /* no mapping was made while the name was away */
                return 0;
        }

        log_info("Calls arrived while exiting for idleness; serving on.");
        m->idle_exiting = false;
        while (m->deferred) {
                DeferredCall *d = m->deferred;

                m->deferred = d->next;
                manager_rerun_call(d->call, d->handler, m);
                sd_bus_message_unref(d->call);
                free(d);
        }
        manager_arm_idle_timer(m);
        return 0;
}

static int on_name_released(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error _unused_) {
        Manager *m = userdata;
        int r;

        /* Every call the bus routed to us before it released the name arrived before this reply. */
        m->idle_slot = sd_bus_slot_unref(m->idle_slot);
        if (!m->deferred && m->n_mappings == 0 && !polkit_pending(m)) {
                manager_idle_exit(m);
                return 0;
        }

        r = sd_bus_request_name_async(sd_bus_message_get_bus(reply), &m->idle_slot, FUSELOOP_BUS_NAME, 0,
                                      on_name_taken_back, m);
        if (r < 0) {
                const sd_bus_error refused = SD_BUS_ERROR_MAKE_CONST(FUSELOOP_ERROR_SETUP_FAILED,
                                                                     "fuseloopd is exiting; call again.");

                log_error_errno(r, "Failed to take the bus name back: %m");
                manager_flush_deferred(m, &refused);
                manager_idle_exit(m);
        }
        return 0;
}

static int on_idle_timer(sd_event_source *s _unused_, uint64_t usec _unused_, void *userdata) {
        Manager *m = userdata;
        int r;

        if (m->n_mappings > 0 || polkit_pending(m) || m->shutting_down) {
                manager_arm_idle_timer(m);  /* look again later */
                return 0;
        }

        if (!m->bus) {
                manager_idle_exit(m);
                return 0;
        }

        /* Give up the name first, so that a call from now on starts a new instance, then exit
         * unless calls came in meanwhile. */
        m->idle_exiting = true;
        r = sd_bus_call_method_async(m->bus, &m->idle_slot, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                     "org.freedesktop.DBus", "ReleaseName", on_name_released, m, "s",
                                     FUSELOOP_BUS_NAME);
        if (r < 0) {
                log_warning_errno(r, "Failed to release the bus name: %m");
                manager_idle_exit(m);
        }
        return 0;
}

static int on_reconnect_timer(sd_event_source *s _unused_, uint64_t usec _unused_, void *userdata) {
        Manager *m = userdata;
        int r;

        m->reconnect_timer = sd_event_source_disable_unref(m->reconnect_timer);
        m->bus = sd_bus_flush_close_unref(m->bus);

        r = manager_connect_bus(m);
        if (r < 0) {
                uint64_t delay = MIN(RECONNECT_MAX_USEC, 250000ULL << MIN(m->reconnect_attempt, 6u));

                m->reconnect_attempt++;
                log_debug_errno(r, "Reconnecting to the bus failed: %m, trying again");
                m->bus = sd_bus_flush_close_unref(m->bus);
                r = sd_event_add_time_relative(m->event, &m->reconnect_timer, CLOCK_MONOTONIC, delay, 0,
                                               on_reconnect_timer, m);
                if (r < 0)
                        log_error_errno(r, "Failed to arm the reconnect timer: %m");
                return 0;
        }

        m->reconnect_attempt = 0;
        for (Mapping *i = m->mappings, *next; i; i = next) {
                next = i->next;
                mapping_bus_reconnected(i);
        }
        return 0;
}

static int on_bus_disconnected(sd_bus_message *msg _unused_, void *userdata, sd_bus_error *error _unused_) {
        Manager *m = userdata;
        int r;

        /* Keep serving every mapping; only the bus is gone. The connection is dropped from the
         * timer, not from inside its own callback. */
        log_warning("Lost the connection to the system bus; mappings keep working, reconnecting.");
        if (m->reconnect_timer)
                return 0;
        r = sd_event_add_time_relative(m->event, &m->reconnect_timer, CLOCK_MONOTONIC, 250000, 0,
                                       on_reconnect_timer, m);
        if (r < 0)
                log_error_errno(r, "Failed to arm the reconnect timer: %m");
        return 0;
}

static int on_name_acquired(sd_bus_message *reply, void *userdata _unused_, sd_bus_error *error _unused_) {
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        uint32_t ret = 0;

        if (e)
                log_error("Failed to take the bus name %s again after reconnecting: %s", FUSELOOP_BUS_NAME, e->message);
        else if (sd_bus_message_read(reply, "u", &ret) < 0 || (ret != 1 && ret != 4))
                log_error("Failed to take the bus name %s again after reconnecting: owned by someone else (%u).",
                          FUSELOOP_BUS_NAME, ret);
        else
                log_notice("Reconnected to the system bus.");
        return 0;
}

static int manager_connect_bus(Manager *m) {
        sd_bus *bus = NULL;
        int r;

        r = sd_bus_open_system(&bus);
        if (r < 0)
                return r;
        m->bus = bus;

        r = sd_bus_attach_event(bus, m->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return r;

        r = sd_bus_add_filter(bus, NULL, on_bus_message, m);
        if (r < 0)
                return r;

        r = sd_bus_match_signal_async(bus, NULL, "org.freedesktop.DBus.Local", "/org/freedesktop/DBus/Local",
                                      "org.freedesktop.DBus.Local", "Disconnected", on_bus_disconnected, NULL, m);
        if (r < 0)
                return r;

        r = bus_manager_register(m);
        if (r < 0)
                return r;
        r = bus_mapping_register(m);
        if (r < 0)
                return r;

        if (m->ready) {
                /* Reconnecting while mappings are served: never wait for the bus. */
                r = sd_bus_request_name_async(bus, NULL, FUSELOOP_BUS_NAME, 0, on_name_acquired, m);
                if (r < 0)
                        return log_debug_errno(r, "Failed to request the bus name %s: %m", FUSELOOP_BUS_NAME);
                return 0;
        }

        /* At start-up nothing is served yet: waiting for dbus-daemon here is harmless. */
        r = sd_bus_request_name(bus, FUSELOOP_BUS_NAME, 0);
        if (r == -EEXIST)
                return log_error_errno(r, "The bus name %s is owned by another process: is fuseloopd running already?",
                                       FUSELOOP_BUS_NAME);
        if (r < 0)
                return log_debug_errno(r, "Failed to acquire the bus name %s: %m", FUSELOOP_BUS_NAME);
        return 0;
}

/* Start-up, second half: the clean-up has run; now the bus. */
static void on_cleanup_done(int result, void *userdata) {
        Manager *m = userdata;
        int r;

        if (result > 0)
                log_notice("Cleaned up %i leftovers of an earlier instance in '%s'.", result, m->run_dir);

        if (m->shutting_down && m->n_mappings == 0) {
                (void) sd_event_exit(m->event, 0);
                return;
        }

        r = manager_connect_bus(m);
        if (r < 0) {
                log_error_errno(r, "Failed to connect to the system bus: %m");
                /* Resumed mappings stay in the fd store: the service manager restarts us. */
                (void) sd_event_exit(m->event, r);
                return;
        }

        for (Mapping *i = m->mappings; i; i = i->next)
                mapping_publish_resumed(i);

        m->ready = true;
        (void) sd_notify(false, "READY=1");
        manager_update_status(m);
        log_info("fuseloopd " FUSELOOP_VERSION " ready on %s (run directory '%s', %u mapping%s resumed).", FUSELOOP_BUS_NAME,
                 m->run_dir, m->n_mappings, m->n_mappings == 1 ? "" : "s");

        /* Calls that came in while the name was not there yet cannot exist, but a shutdown may. */
        if (m->shutting_down) {
                for (Mapping *i = m->mappings, *next; i; i = next) {
                        next = i->next;
                        mapping_shutdown(i);
                }
                manager_update_status(m);
        }
        manager_arm_idle_timer(m);
}

typedef struct Cleanup {
        Manager *manager;
        LoopDevice *keep_loops;
        size_t n_keep_loops;
        char **keep_names;
} Cleanup;

static void cleanup_free(Cleanup *c) {
        for (size_t i = 0; c->keep_names && c->keep_names[i]; i++)
                free(c->keep_names[i]);
        free(c->keep_names);
        free(c->keep_loops);
        free(c);
}

static int job_cleanup(void *userdata) {
        Cleanup *c = userdata;

        /* Runs on a worker: the resumed mappings are served meanwhile, and the clean-up may touch
         * their FUSE files (a stat, a backing file's status). */
        return run_dir_cleanup(c->manager->run_dir, c->keep_loops, c->n_keep_loops, c->keep_names);
}

static void on_job_cleanup_done(int result, void *userdata) {
        Cleanup *c = userdata;
        Manager *m = c->manager;

        if (result < 0)
                log_warning_errno(result, "Failed to clean up the run directory: %m, ignoring");
        cleanup_free(c);
        on_cleanup_done(result, m);
}

/* Resumes every mapping handed back by the service manager. Returns how many. */
static unsigned manager_resume(Manager *m) {
        _cleanup_(freep) StoredMapping *stored = NULL;
        unsigned n_resumed = 0;
        int n;

        n = fd_store_take(&stored);
        if (n < 0) {
                log_error_errno(n, "Failed to take the fds passed by the service manager: %m");
                return 0;
        }

        for (int i = 0; i < n; i++) {
                if (mapping_resume(m, &stored[i]) >= 0)
                        n_resumed++;
                else
                        fd_store_remove_mapping(stored[i].diskseq);
                stored_mapping_close(&stored[i]);
        }
        if (n > 0)
                log_info("Resumed %u of %i mapping%s kept in the fd store.", n_resumed, n, n == 1 ? "" : "s");
        return n_resumed;
}

int manager_startup(Manager *m) {
        Cleanup *c;
        size_t k = 0;
        int r;

        /* Mappings kept by the service manager are served again first: the file systems on
         * them wait until we answer. */
        (void) manager_resume(m);

        c = calloc(1, sizeof(*c));
        if (!c)
                return log_oom();
        c->manager = m;
        c->keep_loops = calloc(m->n_mappings + 1, sizeof(LoopDevice));
        c->keep_names = calloc(m->n_mappings + 1, sizeof(char *));
        if (!c->keep_loops || !c->keep_names) {
                cleanup_free(c);
                return log_oom();
        }
        /* Copies: a resumed mapping may go while the clean-up runs. */
        for (Mapping *i = m->mappings; i; i = i->next, k++) {
                c->keep_loops[k] = i->loop;
                c->keep_names[k] = strdup(i->name);
                if (!c->keep_names[k]) {
                        cleanup_free(c);
                        return log_oom();
                }
        }
        c->n_keep_loops = k;

        /* The clean-up may need answers from the resumed mappings: on a worker, with the loop
         * running. The bus follows once it is done, so that a Map never meets a leftover. */
        r = worker_run(m->worker, job_cleanup, on_job_cleanup_done, c);
        if (r < 0) {
                cleanup_free(c);
                return log_error_errno(r, "Failed to start the clean-up: %m");
        }
        return 0;
}

int manager_run(Manager *m) {
        int r;

        r = sd_event_loop(m->event);
        if (r < 0)
                return log_error_errno(r, "Event loop failed: %m");
        return r;
}

Mapping *manager_find_mapping(Manager *m, const char *name) {
        for (Mapping *i = m->mappings; i; i = i->next)
                if (streq(i->name, name))
                        return i;
        return NULL;
}

Mapping *manager_find_mapping_by_device(Manager *m, const char *device) {
        int nr = loop_device_parse_number(device);

        if (nr < 0)
                return NULL;
        for (Mapping *i = m->mappings; i; i = i->next)
                if (i->loop_attached && i->loop.nr == nr)
                        return i;
        return NULL;
}

void manager_add_mapping(Manager *m, Mapping *mapping) {
        Mapping *last = m->mappings;

        while (last && last->next)
                last = last->next;

        mapping->prev = last;
        mapping->next = NULL;
        if (last)
                last->next = mapping;
        else
                m->mappings = mapping;
        m->n_mappings++;
}

void manager_remove_mapping(Manager *m, Mapping *mapping) {
        if (mapping->prev)
                mapping->prev->next = mapping->next;
        else
                m->mappings = mapping->next;
        if (mapping->next)
                mapping->next->prev = mapping->prev;
        mapping->next = mapping->prev = NULL;
        m->n_mappings--;
}

void manager_update_status(Manager *m) {
        char status[512];
        size_t len;
        unsigned busy = 0;

        if (m->handing_over) {
                if (m->n_mappings == 0)
                        (void) sd_event_exit(m->event, 0);
                return;
        }

        if (!m->ready)
                return;

        if (!m->shutting_down) {
                (void) sd_notifyf(false, "STATUS=Serving %u mapping%s.", m->n_mappings, m->n_mappings == 1 ? "" : "s");
                if (m->n_mappings == 0)
                        manager_arm_idle_timer(m);
                return;
        }

        if (m->n_mappings == 0) {
                (void) sd_notify(false, "STATUS=All mappings removed, exiting.");
                (void) sd_event_exit(m->event, 0);
                return;
        }

        /* Names are long (up to 128 bytes): list as many as fit, then count the rest. */
        len = (size_t) snprintf(status, sizeof(status), "STATUS=Shutting down, waiting for %u mapping%s to be released:",
                                m->n_mappings, m->n_mappings == 1 ? "" : "s");
        for (Mapping *i = m->mappings; i; i = i->next) {
                char dev[32], entry[192];
                int n;

                n = snprintf(entry, sizeof(entry), "%s '%s' (%s)", busy > 0 ? "," : "", i->name,
                             mapping_device(i, dev, sizeof(dev))[0] ? dev : "no device");
                if (n < 0 || len + (size_t) n >= sizeof(status) - 16)
                        break;
                memcpy(status + len, entry, (size_t) n + 1);
                len += (size_t) n;
                busy++;
        }
        if (busy < m->n_mappings)
                (void) snprintf(status + len, sizeof(status) - len, ", ...");
        (void) sd_notify(false, status);
}
