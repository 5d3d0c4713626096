/* Sources served by an NBD server, read with libnbd's asynchronous API on the event loop.
 *
 * Each connection is a libnbd handle whose socket is an sd-event io source; the loop tells libnbd
 * when the socket is ready (nbd_aio_notify_*) and asks it which direction it waits for next. Reads
 * are issued with nbd_aio_pread() and pipelined on the connection. libnbd runs completion
 * callbacks from inside nbd_aio_notify_*(): those only collect the finished reads, which are
 * handed on once libnbd has returned. A read's done callback may start the mapping's teardown,
 * and nothing of libnbd may be on the stack when the source is freed.
 *
 * A source named by an URI opens more connections when the server says that they see the same
 * data (NBD_FLAG_CAN_MULTI_CONN), and reads go to the connection with the fewest in flight. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libnbd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "log.h"
#include "macro.h"
#include "source-nbd.h"
#include "util.h"

/* Connections per source when the server allows more than one. */
#define NBD_CONNECTIONS_MAX 4

typedef struct NbdRead NbdRead;

typedef struct NbdConn {
        SourceNbd *source;
        struct nbd_handle *nbd;
        /* Watches our own duplicate of libnbd's socket: libnbd closes its fd when it likes (a
         * failed connection, the next address to try), and an epoll registration of a closed fd
         * whose socket lives on elsewhere (the caller's copy in a Map call) would outlive our
         * event source. */
        sd_event_source *io;
        ino_t sock_ino;          /* which socket io watches */
        uint32_t events;
        unsigned n_in_flight;
        bool ready;
        bool dead;
} NbdConn;

struct SourceNbd {
        Source source;
        char *uri;
        sd_event *event;
        sd_event_source *kick;   /* looks at handles that moved on before they were watched */
        NbdConn conns[NBD_CONNECTIONS_MAX];
        unsigned n_conns;
        bool connected_called;
        int connected_result;    /* reported once libnbd returned */
        bool connected_pending;
        SourceNbdConnected connected;
        void *connected_userdata;
        /* Reads libnbd completed, handed on once it returned. */
        NbdRead *completed;
        char error[256];
};

struct NbdRead {
        NbdConn *conn;
        size_t len;
        int result;
        SourceReadDone done;
        void *userdata;
        NbdRead *next;
};

static const SourceVTable source_nbd_vtable;

static int nbd_errno(void) {
        int e = nbd_get_errno();

        return e > 0 ? -e : -EIO;
}

bool nbd_uri_is_nbd(const char *uri) {
        return startswith(uri, "nbd://") || startswith(uri, "nbd+unix://") || startswith(uri, "nbds://") ||
               startswith(uri, "nbds+unix://");
}

bool nbd_uri_tls_supported(void) {
        struct nbd_handle *h = nbd_create();
        bool r = h && nbd_supports_tls(h) == 1;

        nbd_close(h);
        return r;
}

bool source_is_nbd(const Source *s) {
        return s && s->vtable == &source_nbd_vtable;
}

Source *source_nbd_get_source(SourceNbd *s) {
        return &s->source;
}

/* What the user sees as the source of an fd: the server's address in URI form, as far as the
 * socket tells it. */
static char *describe_socket(int sock, const char *export_name) {
        struct sockaddr_storage sa = {};
        socklen_t salen = sizeof(sa);
        char addr[INET6_ADDRSTRLEN] = "";
        char *d = NULL;
        int r = -1;

        if (getpeername(sock, (struct sockaddr *) &sa, &salen) < 0)
                sa.ss_family = AF_UNSPEC;

        switch (sa.ss_family) {
        case AF_UNIX: {
                const struct sockaddr_un *un = (const struct sockaddr_un *) &sa;
                size_t n = salen > offsetof(struct sockaddr_un, sun_path) ?
                                   salen - offsetof(struct sockaddr_un, sun_path) : 0;

                if (n > 0 && un->sun_path[0] != '\0')
                        r = asprintf(&d, "nbd+unix:///%s?socket=%.*s", export_name, (int) strnlen(un->sun_path, n),
                                     un->sun_path);
                break;
        }
        case AF_INET: {
                const struct sockaddr_in *in = (const struct sockaddr_in *) &sa;

                (void) inet_ntop(AF_INET, &in->sin_addr, addr, sizeof(addr));
                r = asprintf(&d, "nbd://%s:%u/%s", addr, ntohs(in->sin_port), export_name);
                break;
        }
        case AF_INET6: {
                const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *) &sa;

                (void) inet_ntop(AF_INET6, &in6->sin6_addr, addr, sizeof(addr));
                r = asprintf(&d, "nbd://[%s]:%u/%s", addr, ntohs(in6->sin6_port), export_name);
                break;
        }
        default:
                break;
        }
        if (r < 0 && asprintf(&d, "nbd (socket, export '%s')", export_name) < 0)
                return NULL;
        if (d)
                (void) utf8_sanitize(d);
        return d;
}

static int on_nbd_debug(void *userdata, const char *context, const char *msg) {
        NbdConn *c = userdata;

        log_debug("NBD '%s' connection %u: %s: %s", c->source->source.description ?: "?",
                  (unsigned) (c - c->source->conns), context, msg);
        return 0;
}

static int conn_init(NbdConn *c, SourceNbd *s, char *errbuf, size_t errlen) {
        *c = (NbdConn) { .source = s };
        c->nbd = nbd_create();
        if (!c->nbd) {
                (void) snprintf(errbuf, errlen, "cannot create an NBD handle: %s", nbd_get_error() ?: "unknown error");
                return nbd_errno();
        }
        /* Only the transports a mapping may use: no subprocesses, no vsock, no local files named
         * in the URI (TLS keys), since the daemon connects with its own privileges. */
        if (nbd_set_uri_allow_transports(c->nbd, LIBNBD_ALLOW_TRANSPORT_TCP | LIBNBD_ALLOW_TRANSPORT_UNIX) < 0 ||
            nbd_set_uri_allow_local_file(c->nbd, false) < 0) {
                (void) snprintf(errbuf, errlen, "cannot set up the NBD handle: %s", nbd_get_error() ?: "unknown error");
                return nbd_errno();
        }
        /* At debug level libnbd tells how the handshake went, until the connection is ready
         * (afterwards it would log every read). */
        if (log_max_level >= LOG_DEBUG &&
            (nbd_set_debug_callback(c->nbd, (nbd_debug_callback) { .callback = on_nbd_debug, .user_data = c }) < 0 ||
             nbd_set_debug(c->nbd, true) < 0))
                log_debug("Cannot trace the NBD handshake: %s", nbd_get_error() ?: "unknown error");
        return 0;
}

int source_nbd_new(const char *uri, int sock, const char *export_name, SourceNbd **ret, char *errbuf,
                   size_t errlen) {
        SourceNbd *s;
        struct stat st;
        int r;

        if (!uri) {
                if (fstat(sock, &st) < 0) {
                        r = -errno;
                        (void) snprintf(errbuf, errlen, "cannot stat the source: %s", strerror(-r));
                        return r;
                }
                if (!S_ISSOCK(st.st_mode)) {
                        (void) snprintf(errbuf, errlen, "protocol 'nbd' needs a socket connected to an NBD server");
                        return -ENOTSOCK;
                }
        }

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->source.vtable = &source_nbd_vtable;

        if (uri) {
                s->uri = strdup(uri);
                s->source.description = strdup(uri);
        } else
                s->source.description = describe_socket(sock, export_name ?: "");
        if ((uri && !s->uri) || !s->source.description) {
                r = -ENOMEM;
                goto fail;
        }

        /* With an URI every connection is opened now (resolving a host name blocks, and this is
         * a worker); those the server does not allow are closed once the first one is ready. */
        for (unsigned i = 0; i < (uri ? NBD_CONNECTIONS_MAX : 1); i++) {
                NbdConn *c = &s->conns[i];

                r = conn_init(c, s, errbuf, errlen);
                if (r < 0)
                        goto fail;
                s->n_conns++;

                if (uri) {
                        if (nbd_aio_connect_uri(c->nbd, uri) < 0) {
                                r = nbd_errno();
                                (void) snprintf(errbuf, errlen, "cannot connect to '%s': %s", uri,
                                                nbd_get_error() ?: strerror(-r));
                                goto fail;
                        }
                } else {
                        if (export_name && nbd_set_export_name(c->nbd, export_name) < 0) {
                                r = nbd_errno();
                                (void) snprintf(errbuf, errlen, "invalid export name: %s", nbd_get_error() ?: "");
                                goto fail;
                        }
                        /* libnbd owns the socket once this succeeds: the last step here. */
                        if (nbd_aio_connect_socket(c->nbd, sock) < 0) {
                                r = nbd_errno();
                                (void) snprintf(errbuf, errlen, "cannot use the socket: %s",
                                                nbd_get_error() ?: strerror(-r));
                                goto fail;
                        }
                }
        }

        *ret = s;
        return 0;

fail:
        source_nbd_free(s);
        return r;
}

static void conn_close(NbdConn *c) {
        c->io = sd_event_source_disable_unref(c->io);
        if (c->nbd)
                nbd_close(c->nbd);
        c->nbd = NULL;
        c->ready = false;
        c->dead = true;
}

/* Everything but the description and the error, which source_free() frees afterwards (closing
 * a handle may still log). */
static void source_nbd_release(SourceNbd *s) {
        for (unsigned i = 0; i < s->n_conns; i++)
                conn_close(&s->conns[i]);
        sd_event_source_disable_unref(s->kick);
        sd_event_unref(s->event);
        free(s->uri);
        free(s);
}

SourceNbd *source_nbd_free(SourceNbd *s) {
        if (s)
                source_free(&s->source);
        return NULL;
}

static int on_conn_io(sd_event_source *es, int fd, uint32_t revents, void *userdata);

/* Follows libnbd's wishes: the socket it uses (it may try several addresses) and the direction it
 * waits for. */
static int conn_update_io(NbdConn *c) {
        uint32_t events = EPOLLIN;
        struct stat st;
        unsigned dir;
        int fd, dfd, r;

        if (!c->nbd || c->dead)
                return 0;

        dir = nbd_aio_get_direction(c->nbd);
        if (dir & LIBNBD_AIO_DIRECTION_WRITE)
                events |= EPOLLOUT;

        /* A connected handle keeps its socket; one that connects may move to another. */
        if (c->io && !c->ready) {
                fd = nbd_aio_get_fd(c->nbd);
                if (fd >= 0 && fstat(fd, &st) >= 0 && st.st_ino != c->sock_ino)
                        c->io = sd_event_source_disable_unref(c->io);
        }

        if (c->io) {
                if (events == c->events)
                        return 0;
                r = sd_event_source_set_io_events(c->io, events);
                if (r >= 0)
                        c->events = events;
                return r;
        }

        fd = nbd_aio_get_fd(c->nbd);
        if (fd < 0)
                return 0;  /* no socket yet */
        if (fstat(fd, &st) < 0)
                return -errno;
        dfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (dfd < 0)
                return -errno;
        r = sd_event_add_io(c->source->event, &c->io, dfd, events, on_conn_io, c);
        if (r < 0) {
                (void) safe_close(dfd);
                return r;
        }
        (void) sd_event_source_set_io_fd_own(c->io, true);
        (void) sd_event_source_set_description(c->io, "nbd");
        c->sock_ino = st.st_ino;
        c->events = events;
        return 0;
}

static void source_nbd_connected(SourceNbd *s, int result) {
        if (s->connected_called)
                return;
        s->connected_called = true;
        s->connected_pending = true;
        s->connected_result = result;
}

static NbdConn *source_nbd_primary(SourceNbd *s) {
        for (unsigned i = 0; i < s->n_conns; i++)
                if (s->conns[i].ready)
                        return &s->conns[i];
        return NULL;
}

static void conn_became_ready(NbdConn *c) {
        SourceNbd *s = c->source;
        NbdConn *primary = source_nbd_primary(s);
        int64_t size;

        (void) nbd_set_debug(c->nbd, false);

        if (primary) {
                /* Another connection: only if the server said they all see the same data, and
                 * it must agree on the size. */
                if (nbd_get_size(c->nbd) != (int64_t) s->source.size) {
                        log_warning("NBD server '%s' reports another size on its second connection; using one.",
                                    s->source.description);
                        conn_close(c);
                        return;
                }
                c->ready = true;
                return;
        }

        size = nbd_get_size(c->nbd);
        if (size <= 0) {
                (void) snprintf(s->error, sizeof(s->error), "the NBD export %s", size == 0 ? "is empty" :
                                "did not tell its size");
                conn_close(c);
                source_nbd_connected(s, -EINVAL);
                return;
        }
        s->source.size = (uint64_t) size;
        c->ready = true;

        /* One connection unless the server allows more (NBD_FLAG_CAN_MULTI_CONN). */
        if (nbd_can_multi_conn(c->nbd) != 1)
                for (unsigned i = 0; i < s->n_conns; i++)
                        if (&s->conns[i] != c)
                                conn_close(&s->conns[i]);

        source_nbd_connected(s, 0);
}

static void conn_failed(NbdConn *c, const char *reason) {
        SourceNbd *s = c->source;
        bool was_ready = c->ready;
        char why_buf[200];
        const char *why = NULL;

        /* libnbd's error string lives only until its next call. */
        if (reason) {
                (void) snprintf(why_buf, sizeof(why_buf), "%s", reason);
                why = why_buf;
        }
        conn_close(c);

        if (!s->connected_called) {
                /* Setting up: fail once no connection is left trying. */
                for (unsigned i = 0; i < s->n_conns; i++)
                        if (!s->conns[i].dead)
                                return;
                if (s->error[0] == '\0')
                        (void) snprintf(s->error, sizeof(s->error), "cannot connect to the NBD server: %s",
                                        why ?: "the connection closed");
                source_nbd_connected(s, -ECONNREFUSED);
                return;
        }

        if (was_ready && !source_nbd_primary(s)) {
                char e[300];

                /* The owner logs it, naming its mapping. */
                (void) snprintf(e, sizeof(e), "the NBD server is gone: %s", why ?: "the connection closed");
                (void) utf8_sanitize(e);
                source_set_error(&s->source, e);
        } else if (was_ready)
                log_warning("A connection to NBD server '%s' broke (%s); the others serve on.",
                            s->source.description, why ?: "the connection closed");
}

static int on_pread_done(void *userdata, int *error) {
        NbdRead *rd = userdata;
        SourceNbd *s = rd->conn->source;

        rd->conn->n_in_flight--;
        rd->result = *error != 0 ? -*error : (int) rd->len;
        rd->next = s->completed;
        s->completed = rd;
        return 1;  /* retire the command */
}

/* Hands on the reads libnbd completed. Their done callbacks may free the source: it is not
 * touched afterwards. */
static void deliver_completed(NbdRead *list) {
        while (list) {
                NbdRead *rd = list;

                list = rd->next;
                rd->done(rd->result, rd->userdata);
                free(rd);
        }
}

static void conn_process(NbdConn *c, uint32_t revents) {
        const char *err = NULL;
        bool notified = false;
        int r = 0;

        /* Only what libnbd waits for: it refuses a notification its state does not expect. A
         * hang-up or an error is news to either direction. */
        if ((revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) &&
            (nbd_aio_get_direction(c->nbd) & LIBNBD_AIO_DIRECTION_READ)) {
                r = nbd_aio_notify_read(c->nbd);
                notified = true;
        }
        if (r >= 0 && (revents & (EPOLLOUT | EPOLLHUP | EPOLLERR)) &&
            (nbd_aio_get_direction(c->nbd) & LIBNBD_AIO_DIRECTION_WRITE)) {
                r = nbd_aio_notify_write(c->nbd);
                notified = true;
        }
        /* A hang-up that libnbd waits for in neither direction would wake us forever. */
        if (r >= 0 && !notified && (revents & (EPOLLHUP | EPOLLERR))) {
                conn_failed(c, "the server closed the connection");
                return;
        }
        if (r < 0)
                err = nbd_get_error();

        if (r < 0 || nbd_aio_is_dead(c->nbd) || nbd_aio_is_closed(c->nbd)) {
                if (!c->source->connected_called && err && c->source->error[0] == '\0')
                        (void) snprintf(c->source->error, sizeof(c->source->error), "%s", err);
                conn_failed(c, err);
                return;
        }

        if (!c->ready && (nbd_aio_is_ready(c->nbd) || nbd_aio_is_processing(c->nbd))) {
                conn_became_ready(c);
                if (c->dead)
                        return;
        }

        r = conn_update_io(c);
        if (r < 0) {
                log_warning_errno(r, "Cannot watch the NBD connection to '%s': %m", c->source->source.description);
                conn_failed(c, "cannot watch the socket");
        }
}

/* Hands on what libnbd finished while it ran; either callback may free the source, so nothing
 * touches it afterwards. */
static void source_nbd_deliver(SourceNbd *s) {
        NbdRead *done = TAKE_PTR(s->completed);

        if (s->connected_pending) {
                s->connected_pending = false;
                if (s->connected)
                        s->connected(s->connected_result, s->error, s->connected_userdata);
        }
        deliver_completed(done);
}

static int on_conn_io(sd_event_source *es _unused_, int fd _unused_, uint32_t revents, void *userdata) {
        NbdConn *c = userdata;

        conn_process(c, revents);
        source_nbd_deliver(c->source);
        return 0;
}

static int on_kick(sd_event_source *es _unused_, void *userdata) {
        SourceNbd *s = userdata;

        s->kick = sd_event_source_disable_unref(s->kick);
        for (unsigned i = 0; i < s->n_conns; i++) {
                NbdConn *c = &s->conns[i];

                if (c->dead || c->ready)
                        continue;
                if (nbd_aio_is_ready(c->nbd) || nbd_aio_is_dead(c->nbd) || nbd_aio_is_closed(c->nbd))
                        log_debug("NBD '%s' connection %u: the handshake ended before the loop watched it.",
                                  s->source.description, i);
                conn_process(c, 0);
        }
        source_nbd_deliver(s);
        return 0;
}

int source_nbd_start(SourceNbd *s, sd_event *e, SourceNbdConnected connected, void *userdata) {
        int r;

        s->event = sd_event_ref(e);
        s->connected = connected;
        s->connected_userdata = userdata;

        for (unsigned i = 0; i < s->n_conns; i++) {
                NbdConn *c = &s->conns[i];

                if (c->dead)
                        continue;
                /* A Unix socket may have finished connecting, even the handshake may be under way. */
                r = conn_update_io(c);
                if (r < 0)
                        return r;
        }
        /* libnbd runs the handshake as far as the server answers while it connects (on a
         * worker): a fast server may have finished it, or closed the connection, and then no
         * socket event would ever come. One look from the loop settles that. */
        r = sd_event_add_defer(e, &s->kick, on_kick, s);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(s->kick, "nbd-start");
        return 0;
}

static NbdConn *source_nbd_pick(SourceNbd *s) {
        NbdConn *best = NULL;

        for (unsigned i = 0; i < s->n_conns; i++) {
                NbdConn *c = &s->conns[i];

                if (c->ready && (!best || c->n_in_flight < best->n_in_flight))
                        best = c;
        }
        return best;
}

static int source_nbd_read(Source *src, void *buf, size_t len, uint64_t offset, SourceReadDone done,
                           void *userdata) {
        SourceNbd *s = (SourceNbd *) src;
        NbdConn *c = source_nbd_pick(s);
        NbdRead *rd;
        int64_t cookie;

        if (!c)
                return -EIO;  /* the server is gone */

        rd = malloc(sizeof(*rd));
        if (!rd)
                return -ENOMEM;
        *rd = (NbdRead) { .conn = c, .len = len, .done = done, .userdata = userdata };

        cookie = nbd_aio_pread(c->nbd, buf, len, offset,
                               (nbd_completion_callback) { .callback = on_pread_done, .user_data = rd }, 0);
        if (cookie < 0) {
                int r = nbd_errno();

                log_debug("NBD read of %zu bytes at %" PRIu64 " from '%s' not issued: %s", len, offset,
                          s->source.description, nbd_get_error() ?: "unknown error");
                free(rd);
                if (nbd_aio_is_dead(c->nbd) || nbd_aio_is_closed(c->nbd))
                        conn_failed(c, nbd_get_error());
                return r;
        }
        c->n_in_flight++;
        return 0;
}

static void source_nbd_flush(Source *src) {
        SourceNbd *s = (SourceNbd *) src;

        /* nbd_aio_pread() writes what the socket takes at once; the rest waits for EPOLLOUT. */
        for (unsigned i = 0; i < s->n_conns; i++)
                if (s->conns[i].ready && conn_update_io(&s->conns[i]) < 0)
                        conn_failed(&s->conns[i], "cannot watch the socket");
}

static void source_nbd_stop(Source *src) {
        SourceNbd *s = (SourceNbd *) src;

        /* The rest of the teardown runs on a worker, where the event loop must not be touched. */
        for (unsigned i = 0; i < s->n_conns; i++)
                s->conns[i].io = sd_event_source_disable_unref(s->conns[i].io);
        s->kick = sd_event_source_disable_unref(s->kick);
        s->event = sd_event_unref(s->event);
}

static void source_nbd_free_source(Source *src) {
        source_nbd_release((SourceNbd *) src);
}

static const SourceVTable source_nbd_vtable = {
        .read = source_nbd_read,
        .flush = source_nbd_flush,
        .stop = source_nbd_stop,
        .free = source_nbd_free_source,
};
