/* Authorization of bus calls that change mappings (root, the mapping's owner, or polkit), without
 * ever waiting on the loop thread. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-bus.h>

#include "manager.h"

typedef struct AuthQuery AuthQuery;

#define POLKIT_DETAILS_MAX 3

/* What a call wants to do. */
typedef struct AuthRequest {
        const char *action;       /* polkit action asked for callers other than root and owner */
        const char *what;         /* for messages: "map file descriptors" */
        uid_t owner;              /* this uid needs no polkit either; (uid_t) -1: nobody */
        uint64_t scope;           /* identifies the object acted on (0: none); with action and
                                   * details it says what a polkit answer is good for */
        const char *details[2 * POLKIT_DETAILS_MAX + 1];  /* key, value, ..., NULL: for polkit rules */
} AuthRequest;

/* Decides whether call may do what req says. Root (uid 0) and req->owner are allowed without
 * asking; anyone else needs polkit to allow req->action. Returns 1 when the call may go on (and
 * writes the caller's uid), a negative value with error set when it may not (AccessDenied, or
 * InteractiveAuthorizationRequired when polkit would ask for a password but the call does not
 * allow interactive authorization), or 0 while the answer is being looked up: the method handler
 * then returns 1, and handler(call, userdata) runs again from the top once the next answer is
 * there (its error return is sent as the reply). Handlers validate their arguments before they
 * authorize, so each run reaches the same point. If polkit cannot be asked, the call is refused. */
int polkit_authorize(Manager *m, sd_bus_message *call, const AuthRequest *req, sd_bus_message_handler_t handler,
                     void *userdata, uid_t *ret_uid, sd_bus_error *error);

/* True while some call waits for its authorization. */
bool polkit_pending(Manager *m);

/* Drops every pending query (at exit), answering each call with error unless it is NULL. */
void polkit_flush(Manager *m, const sd_bus_error *error);
