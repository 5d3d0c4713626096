/* Authorization of bus calls that change mappings, without ever waiting on the loop thread.
 *
 * A handler asks polkit_authorize(). A query for its message goes through up to two lookups on
 * the bus: the caller's uid (GetConnectionUnixUser), then, unless the caller is root or the
 * mapping's owner, polkit's CheckAuthorization. After each answer the handler runs again from the
 * top with the same message and finds the query a step further. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "macro.h"
#include "polkit.h"
#include "util.h"

/* polkit may wait for the user to type a password; without that it answers at once. The client
 * (fuseloopctl) waits longer than this plus the setup of a mapping. */
#define POLKIT_TIMEOUT_USEC             (25ULL * 1000000ULL)
#define POLKIT_INTERACTIVE_TIMEOUT_USEC (120ULL * 1000000ULL)

/* Calls waiting for their authorization hold their message and its fds: bound them, per
 * connection and in all. */
#define AUTH_QUERIES_PER_SENDER_MAX 16u
#define AUTH_QUERIES_MAX            1024u

/* CheckAuthorization() flags */
#define POLKIT_CHECK_ALLOW_USER_INTERACTION 1u

typedef enum AuthStage {
        AUTH_UID_PENDING,       /* asking the bus for the caller's uid */
        AUTH_UID_KNOWN,
        AUTH_POLKIT_PENDING,    /* asking polkit */
        AUTH_POLKIT_DONE,
} AuthStage;

struct AuthQuery {
        Manager *manager;
        AuthQuery *next;
        bool linked;            /* in manager->auth_queries */
        bool running;           /* its handler runs again right now */
        sd_bus_message *call;
        sd_bus_message_handler_t handler;
        void *userdata;
        sd_bus_slot *slot;
        AuthStage stage;
        int error;              /* the uid lookup failed */
        uid_t uid;
        char *asked;            /* what polkit was asked about (action, details, scope) */
        bool authorized;        /* polkit's answer */
        bool challenge;
        char *error_name;       /* polkit could not be asked */
        char *error_message;
};

static AuthQuery *auth_query_free(AuthQuery *q) {
        if (!q)
                return NULL;
        sd_bus_slot_unref(q->slot);
        sd_bus_message_unref(q->call);
        free(q->asked);
        free(q->error_name);
        free(q->error_message);
        free(q);
        return NULL;
}

static void auth_query_unlink(AuthQuery *q) {
        if (!q->linked)
                return;
        for (AuthQuery **p = &q->manager->auth_queries; *p; p = &(*p)->next)
                if (*p == q) {
                        *p = q->next;
                        break;
                }
        q->next = NULL;
        q->linked = false;
        q->manager->n_auth_queries--;
}

/* Done with q: freed now, or (while its handler runs from auth_query_rerun()) once that returns. */
static void auth_query_finish(AuthQuery *q) {
        auth_query_unlink(q);
        if (!q->running)
                auth_query_free(q);
}

static void auth_query_set_error(AuthQuery *q, const sd_bus_error *e) {
        free(q->error_name);
        free(q->error_message);
        q->error_name = strdup(e && e->name ? e->name : SD_BUS_ERROR_FAILED);
        q->error_message = e && e->message ? strdup(e->message) : NULL;
}

/* Runs the method again from the top after an answer arrived. The handler takes the query's
 * result or starts the next lookup; a handler that stopped earlier (the mapping went away
 * meanwhile) leaves the query without a pending lookup, and it is dropped here. */
static void auth_query_rerun(AuthQuery *q) {
        q->running = true;
        manager_rerun_call(q->call, q->handler, q->userdata);
        q->running = false;

        if (!q->linked || !q->slot) {
                auth_query_unlink(q);
                auth_query_free(q);
        }
}

static int on_uid_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error _unused_) {
        AuthQuery *q = userdata;
        uint32_t uid;

        q->slot = sd_bus_slot_unref(q->slot);
        q->stage = AUTH_UID_KNOWN;
        if (sd_bus_message_is_method_error(reply, NULL)) {
                q->error = -EACCES;
                auth_query_set_error(q, sd_bus_message_get_error(reply));
        } else if (sd_bus_message_read(reply, "u", &uid) < 0)
                q->error = -EBADMSG;
        else
                q->uid = (uid_t) uid;

        auth_query_rerun(q);
        return 0;
}

static int on_polkit_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error _unused_) {
        AuthQuery *q = userdata;
        int authorized, challenge, r;

        q->slot = sd_bus_slot_unref(q->slot);
        q->stage = AUTH_POLKIT_DONE;
        if (sd_bus_message_is_method_error(reply, NULL))
                auth_query_set_error(q, sd_bus_message_get_error(reply));
        else {
                r = sd_bus_message_enter_container(reply, 'r', "bba{ss}");
                if (r >= 0)
                        r = sd_bus_message_read(reply, "bb", &authorized, &challenge);
                if (r < 0) {
                        const sd_bus_error e = SD_BUS_ERROR_MAKE_CONST(SD_BUS_ERROR_INVALID_ARGS,
                                                                       "polkit sent a malformed reply");

                        auth_query_set_error(q, &e);
                } else {
                        q->authorized = authorized;
                        q->challenge = challenge;
                }
        }

        auth_query_rerun(q);
        return 0;
}

/* What polkit is asked about, as one string: an answer is good only for the same question. */
static char *auth_request_describe(const AuthRequest *req) {
        _cleanup_(freep) char *s = NULL;

        if (asprintf(&s, "%s\n%" PRIu64 "\n", req->action, req->scope) < 0)
                return NULL;
        for (size_t i = 0; req->details[i] && req->details[i + 1]; i += 2) {
                char *t;

                if (asprintf(&t, "%s%s=%s\n", s, req->details[i], req->details[i + 1]) < 0)
                        return NULL;
                free(s);
                s = t;
        }
        return TAKE_PTR(s);
}

static int polkit_check_start(AuthQuery *q, const AuthRequest *req) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *msg = NULL;
        sd_bus *bus = sd_bus_message_get_bus(q->call);
        bool interactive = sd_bus_message_get_allow_interactive_authorization(q->call) > 0;
        char *asked;
        int r;

        r = sd_bus_message_new_method_call(bus, &msg, "org.freedesktop.PolicyKit1",
                                           "/org/freedesktop/PolicyKit1/Authority",
                                           "org.freedesktop.PolicyKit1.Authority", "CheckAuthorization");
        if (r < 0)
                return r;

        /* The subject is the caller's connection: polkit looks up its uid and process itself. */
        r = sd_bus_message_append(msg, "(sa{sv})s", "system-bus-name", 1, "name", "s",
                                  sd_bus_message_get_sender(q->call), req->action);
        if (r < 0)
                return r;

        r = sd_bus_message_open_container(msg, 'a', "{ss}");
        if (r < 0)
                return r;
        for (size_t i = 0; req->details[i] && req->details[i + 1]; i += 2) {
                r = sd_bus_message_append(msg, "{ss}", req->details[i], req->details[i + 1]);
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_close_container(msg);
        if (r < 0)
                return r;

        r = sd_bus_message_append(msg, "us", interactive ? POLKIT_CHECK_ALLOW_USER_INTERACTION : 0u, "");
        if (r < 0)
                return r;

        asked = auth_request_describe(req);
        if (!asked)
                return -ENOMEM;
        free(q->asked);
        q->asked = asked;

        r = sd_bus_call_async(bus, &q->slot, msg, on_polkit_reply, q,
                              interactive ? POLKIT_INTERACTIVE_TIMEOUT_USEC : POLKIT_TIMEOUT_USEC);
        if (r < 0)
                return r;

        q->stage = AUTH_POLKIT_PENDING;
        return 0;
}

/* Turns a finished query into the decision and finishes it. */
static int auth_query_decide(AuthQuery *q, const AuthRequest *req, uid_t *ret_uid, sd_bus_error *error) {
        _cleanup_(freep) char *ename = TAKE_PTR(q->error_name), *emsg = TAKE_PTR(q->error_message);
        uid_t uid = q->uid;
        bool authorized = q->authorized, challenge = q->challenge;
        bool interactive = sd_bus_message_get_allow_interactive_authorization(q->call) > 0;
        int e = q->error;

        auth_query_finish(q);

        if (e < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                         "Permission denied: cannot identify the caller%s%s.", emsg ? ": " : "",
                                         emsg ?: "");
        if (ename) {
                log_warning("Cannot ask polkit whether uid %u may %s: %s: %s", (unsigned) uid, req->what, ename,
                            emsg ?: "no message");
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                         "Permission denied: authorization cannot be checked because polkit is not "
                                         "available (%s%s%s).",
                                         ename, emsg ? ": " : "", emsg ?: "");
        }
        /* A challenge although the call allowed interaction: no authentication agent asked, or
         * the password was wrong. Asking again the same way would not help. */
        if (!authorized && challenge && interactive) {
                log_info("polkit did not let uid %u %s: authentication failed or no agent asked (%s).",
                         (unsigned) uid, req->what, req->action);
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                         "Permission denied: uid %u may %s (polkit action %s) only after "
                                         "authenticating, which failed or no authentication agent asked for.",
                                         (unsigned) uid, req->what, req->action);
        }
        if (!authorized && challenge)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED,
                                         "Authentication is required to %s (polkit action %s), but the call does "
                                         "not allow interactive authorization.",
                                         req->what, req->action);
        if (!authorized) {
                log_info("polkit does not allow uid %u to %s (%s).", (unsigned) uid, req->what, req->action);
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                         "Permission denied: uid %u may not %s (polkit action %s).", (unsigned) uid,
                                         req->what, req->action);
        }

        if (ret_uid)
                *ret_uid = uid;
        return 1;
}

static int auth_query_new(Manager *m, sd_bus_message *call, sd_bus_message_handler_t handler, void *userdata,
                          sd_bus_error *error) {
        const char *sender = sd_bus_message_get_sender(call);
        unsigned n = 0;
        AuthQuery *q;
        int r;

        for (q = m->auth_queries; q; q = q->next)
                if (streq_ptr(sd_bus_message_get_sender(q->call), sender))
                        n++;
        if (n >= AUTH_QUERIES_PER_SENDER_MAX || m->n_auth_queries >= AUTH_QUERIES_MAX)
                return sd_bus_error_setf(error, SD_BUS_ERROR_LIMITS_EXCEEDED,
                                         "Too many calls wait for their authorization (%u of this connection, "
                                         "%u in all); try again later.",
                                         n, m->n_auth_queries);

        q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        *q = (AuthQuery) {
                .manager = m,
                .call = sd_bus_message_ref(call),
                .handler = handler,
                .userdata = userdata,
                .stage = AUTH_UID_PENDING,
        };

        r = sd_bus_call_method_async(sd_bus_message_get_bus(call), &q->slot, "org.freedesktop.DBus",
                                     "/org/freedesktop/DBus", "org.freedesktop.DBus", "GetConnectionUnixUser",
                                     on_uid_reply, q, "s", sender);
        if (r < 0) {
                auth_query_free(q);
                return r;
        }

        q->next = m->auth_queries;
        q->linked = true;
        m->auth_queries = q;
        m->n_auth_queries++;
        return 0;
}

int polkit_authorize(Manager *m, sd_bus_message *call, const AuthRequest *req, sd_bus_message_handler_t handler,
                     void *userdata, uid_t *ret_uid, sd_bus_error *error) {
        _cleanup_(freep) char *asking = NULL;
        AuthQuery *q;
        int r;

        for (q = m->auth_queries; q; q = q->next)
                if (q->call == call)
                        break;

        if (!q)
                return auth_query_new(m, call, handler, userdata, error);

        switch (q->stage) {
        case AUTH_UID_PENDING:
        case AUTH_POLKIT_PENDING:
                return 0;

        case AUTH_UID_KNOWN:
        case AUTH_POLKIT_DONE:
                if (q->error < 0)
                        return auth_query_decide(q, req, ret_uid, error);
                /* The owner is looked up on every run: the mapping may have changed meanwhile. */
                if (q->uid == 0 || q->uid == req->owner) {
                        if (ret_uid)
                                *ret_uid = q->uid;
                        auth_query_finish(q);
                        return 1;
                }
                if (q->stage == AUTH_POLKIT_DONE) {
                        /* polkit's answer holds for what it was asked about only: if the mapping
                         * was replaced meanwhile, ask again. */
                        asking = auth_request_describe(req);
                        if (!asking)
                                return -ENOMEM;
                        if (q->error_name || streq_ptr(q->asked, asking))
                                return auth_query_decide(q, req, ret_uid, error);
                        log_debug("The object of an authorized call changed; asking polkit again.");
                }

                r = polkit_check_start(q, req);
                if (r < 0) {
                        const sd_bus_error e = SD_BUS_ERROR_MAKE_CONST(SD_BUS_ERROR_FAILED, "cannot send the query");

                        log_debug_errno(r, "Failed to ask polkit: %m");
                        auth_query_set_error(q, &e);
                        return auth_query_decide(q, req, ret_uid, error);
                }
                return 0;
        }

        return -EINVAL;
}

bool polkit_pending(Manager *m) {
        return m->auth_queries;
}

void polkit_flush(Manager *m, const sd_bus_error *error) {
        while (m->auth_queries) {
                AuthQuery *q = m->auth_queries;

                if (error)
                        (void) sd_bus_reply_method_error(q->call, error);
                auth_query_finish(q);
        }
}
