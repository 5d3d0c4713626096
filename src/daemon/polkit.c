/* Authorization of bus calls that change mappings, without ever waiting on the loop thread.
 *
 * A handler asks bus_authorize(); the first time a query to the bus starts and the handler
 * returns; when the answer arrives the handler runs again from the top with the same message and
 * finds the finished query. Handlers validate their arguments before they authorize, so the second
 * run reaches the same point. */
#include <errno.h>
#include <stdlib.h>

#include "bus-auth.h"
#include "log.h"
#include "macro.h"

struct AuthQuery {
        Manager *manager;
        AuthQuery *next;
        sd_bus_message *call;
        sd_bus_message_handler_t handler;
        void *userdata;
        sd_bus_slot *slot;
        bool done;
        int error;       /* the lookup failed */
        char *error_message;
        uid_t uid;
};

static AuthQuery *auth_query_free(AuthQuery *q) {
        if (!q)
                return NULL;
        sd_bus_slot_unref(q->slot);
        sd_bus_message_unref(q->call);
        free(q->error_message);
        free(q);
        return NULL;
}

static void auth_query_unlink(AuthQuery *q) {
        for (AuthQuery **p = &q->manager->auth_queries; *p; p = &(*p)->next)
                if (*p == q) {
                        *p = q->next;
                        q->next = NULL;
                        return;
                }
}

/* Compares pointers only: q may have been freed already. */
static bool auth_query_linked(Manager *m, const AuthQuery *q) {
        for (AuthQuery *i = m->auth_queries; i; i = i->next)
                if (i == q)
                        return true;
        return false;
}

static int on_uid_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error _unused_) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        AuthQuery *q = userdata;
        Manager *m = q->manager;
        sd_bus_message *call;
        uint32_t uid;
        int r;

        q->done = true;
        q->slot = sd_bus_slot_unref(q->slot);
        if (sd_bus_message_is_method_error(reply, NULL)) {
                const sd_bus_error *e = sd_bus_message_get_error(reply);

                q->error = -EACCES;
                q->error_message = e && e->message ? strdup(e->message) : NULL;
        } else if (sd_bus_message_read(reply, "u", &uid) < 0)
                q->error = -EBADMSG;
        else
                q->uid = (uid_t) uid;

        /* Run the method again from the top; it takes the answer and unlinks the query. */
        call = sd_bus_message_ref(q->call);
        r = sd_bus_message_rewind(call, true);
        if (r >= 0)
                r = q->handler(call, q->userdata, &error);
        if (r < 0) {
                if (sd_bus_error_is_set(&error))
                        (void) sd_bus_reply_method_error(call, &error);
                else
                        (void) sd_bus_reply_method_errno(call, r, NULL);
        }
        sd_bus_message_unref(call);

        /* A handler that did not get as far as asking again leaves the query behind. */
        if (auth_query_linked(m, q)) {
                auth_query_unlink(q);
                auth_query_free(q);
        }
        return 0;
}

int bus_authorize(Manager *m, sd_bus_message *call, const char *what, sd_bus_message_handler_t handler,
                  void *userdata, uid_t *ret_uid, sd_bus_error *error) {
        AuthQuery *q;
        int r;

        for (q = m->auth_queries; q; q = q->next)
                if (q->call == call)
                        break;

        if (q && q->done) {
                uid_t uid = q->uid;
                int e = q->error;
                _cleanup_(freep) char *msg = TAKE_PTR(q->error_message);

                auth_query_unlink(q);
                auth_query_free(q);

                if (e < 0)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                                 "Permission denied: cannot identify the caller%s%s.",
                                                 msg ? ": " : "", msg ?: "");
                if (uid != 0)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                                 "Permission denied: only root may %s.", what);
                if (ret_uid)
                        *ret_uid = uid;
                return 1;
        }
        if (q)
                return 0;  /* still waiting */

        q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        *q = (AuthQuery) {
                .manager = m,
                .call = sd_bus_message_ref(call),
                .handler = handler,
                .userdata = userdata,
        };

        r = sd_bus_call_method_async(sd_bus_message_get_bus(call), &q->slot, "org.freedesktop.DBus",
                                     "/org/freedesktop/DBus", "org.freedesktop.DBus", "GetConnectionUnixUser",
                                     on_uid_reply, q, "s", sd_bus_message_get_sender(call));
        if (r < 0) {
                auth_query_free(q);
                return r;
        }

        q->next = m->auth_queries;
        m->auth_queries = q;
        return 0;
}

void bus_auth_flush(Manager *m) {
        while (m->auth_queries) {
                AuthQuery *q = m->auth_queries;

                m->auth_queries = q->next;
                auth_query_free(q);
        }
}
