/* The daemon's state: the event loop, the bus connection, the worker, the io ring, the udev
 * monitor and every mapping. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "source-fd.h"
#include "udev-monitor.h"
#include "worker.h"

typedef struct Mapping Mapping;

typedef struct Manager {
        sd_event *event;
        sd_bus *bus;                 /* NULL while the bus is gone */
        sd_event_source *reconnect_timer;
        unsigned reconnect_attempt;
        Worker *worker;
        IoRing *ring;
        BlockMonitor *monitor;
        char *run_dir;
        int run_dir_lock;            /* flock()ed fd of the run directory: one instance at a time */

        struct AuthQuery *auth_queries;  /* bus calls waiting for their authorization */
        unsigned n_auth_queries;

        /* Idle exit: with no mappings and no calls for idle_timeout_usec (0: never), the name is
         * released and the daemon exits; bus activation starts it again. */
        uint64_t idle_timeout_usec;
        sd_event_source *idle_timer;
        sd_bus_slot *idle_slot;      /* ReleaseName, or RequestName to take it back */
        bool idle_exiting;           /* the name is being released: Map calls wait */
        struct DeferredCall *deferred;

        unsigned user_quota;         /* most mappings a non-root uid may have */

        Mapping *mappings;           /* all mappings, in creation order */
        unsigned n_mappings;

        bool shutting_down;
        bool ready;

        /* SIGTERM: asking systemd whether a restart is queued (then the mappings stay in the fd
         * store for the next instance: handing_over) or this is a stop. */
        bool stop_query_pending;
        sd_event_source *stop_timer;
        bool handing_over;
} Manager;

/* Sets up the event loop, signals, worker, io ring and udev monitor; run_dir is created if
 * needed. Leftovers of an earlier instance are cleaned up by manager_startup(). */
int manager_new(const char *run_dir, Manager **ret);

Manager *manager_free(Manager *m);

/* Resumes the mappings kept in the service manager's fd store, then (from the event loop) cleans
 * up leftovers in the run directory on a worker, connects to the system bus, takes the name,
 * publishes the resumed mappings and tells the service manager we are ready. */
int manager_startup(Manager *m);

/* Runs the event loop until shutdown is complete. Returns the exit code. */
int manager_run(Manager *m);

/* Looks up a mapping by name, or by "/dev/loopN". */
Mapping *manager_find_mapping(Manager *m, const char *name);
Mapping *manager_find_mapping_by_device(Manager *m, const char *device);

/* Adds and removes mappings from the manager's list. */
void manager_add_mapping(Manager *m, Mapping *mapping);
void manager_remove_mapping(Manager *m, Mapping *mapping);

/* Recomputes sd_notify STATUS= and, during shutdown, exits once nothing is left. */
void manager_update_status(Manager *m);

/* Runs a bus method handler again from the top for call (after an answer it waited for), and
 * sends its error return as the reply. */
void manager_rerun_call(sd_bus_message *call, sd_bus_message_handler_t handler, void *userdata);

/* While the daemon gives up its name to exit for idleness, calls that would create a mapping
 * wait: returns 1 if call was kept, to run again once the name is back (or to be refused if
 * another instance took it), 0 if it may go on now, or -ENOMEM. */
int manager_defer_call(Manager *m, sd_bus_message *call, sd_bus_message_handler_t handler);

/* Installs the bus vtables (bus-manager.c, bus-mapping.c) on m->bus. */
int bus_manager_register(Manager *m);
int bus_mapping_register(Manager *m);
