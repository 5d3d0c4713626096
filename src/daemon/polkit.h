/* Authorization of bus calls that change mappings, without ever waiting on the loop thread. */
#pragma once

#include <sys/types.h>
#include <systemd/sd-bus.h>

#include "manager.h"

typedef struct AuthQuery AuthQuery;

/* Decides whether call may change mappings. Returns 1 when it may (and writes the caller's uid),
 * a negative value with error set when it may not (AccessDenied), or 0 when the answer is being
 * looked up: the method handler then returns 1, and handler(call, userdata) runs again from the
 * top once the answer is there (its error return is sent as the reply). For now the rule is: only
 * root may change anything (MapURI opens any path as root); the caller's uid is asked from the
 * bus asynchronously. */
int bus_authorize(Manager *m, sd_bus_message *call, const char *what, sd_bus_message_handler_t handler,
                  void *userdata, uid_t *ret_uid, sd_bus_error *error);

/* Drops every pending query (at exit). */
void bus_auth_flush(Manager *m);
