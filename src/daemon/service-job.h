/* Which job the service manager has queued for our own unit: a restart (stop, then start) or a
 * plain stop. systemd does not tell a service why it is stopped; it does show the unit's job on
 * the bus, and during the stop half of "systemctl restart" (also of the restart of a package
 * upgrade) that job is of type "restart". */
#pragma once

#include <stdint.h>
#include <systemd/sd-bus.h>

typedef void (*ServiceJobDone)(const char *job_type, void *userdata);

/* Asks systemd (org.freedesktop.systemd1 on bus, never activated) for the type of the job queued
 * for the unit of this process. done(type, userdata) runs on the event loop once it is known:
 * type is e.g. "restart" or "stop", or NULL if no job is queued, systemd does not answer within
 * timeout_usec or is not there at all. Returns 0, or -errno (then done does not run). */
int service_job_query(sd_bus *bus, uint64_t timeout_usec, ServiceJobDone done, void *userdata);
