/* map NAME nbd://…: the client connects to the NBD server itself, with its own credentials and
 * network access, and hands the connected socket to the daemon, which does the handshake. */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctl.h"
#include "macro.h"
#include "util.h"

#define NBD_DEFAULT_PORT "10809"

bool source_is_nbd_uri(const char *s) {
        return startswith(s, "nbd://") || startswith(s, "nbd+unix://") || startswith(s, "nbds://") ||
               startswith(s, "nbds+unix://");
}

/* Decodes %XX in the first n bytes of s. */
static char *decode(const char *s, size_t n) {
        char *d = malloc(n + 1), *o = d;

        if (!d)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                int hi, lo;

                if (s[i] != '%') {
                        *o++ = s[i];
                        continue;
                }
                hi = i + 2 < n + 1 ? unhexchar(s[i + 1]) : -1;
                lo = hi < 0 ? -1 : unhexchar(s[i + 2]);
                if (lo < 0 || (hi | lo) == 0) {
                        free(d);
                        errno = EINVAL;
                        return NULL;
                }
                *o++ = (char) (hi << 4 | lo);
                i += 2;
        }
        *o = '\0';
        return d;
}

/* The value of key in a query string "a=b&c=d", decoded; NULL (errno ENOENT) when absent. */
static char *query_get(const char *query, const char *key) {
        size_t klen = strlen(key);

        for (const char *p = query; p && *p;) {
                const char *end = strchrnul(p, '&');

                if ((size_t) (end - p) > klen && strncmp(p, key, klen) == 0 && p[klen] == '=')
                        return decode(p + klen + 1, (size_t) (end - p) - klen - 1);
                p = *end ? end + 1 : NULL;
        }
        errno = ENOENT;
        return NULL;
}

static int connect_unix(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_(closep) int fd = -EBADF;

        if (strlen(path) >= sizeof(sa.sun_path))
                return error_errno(ENAMETOOLONG, "the socket path '%s' is too long", path);
        strcpy(sa.sun_path, path);

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return error_errno(errno, "cannot create a socket: %m");
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return error_errno(errno, "cannot connect to '%s': %m", path);
        return TAKE_FD(fd);
}

static int connect_tcp(const char *host, const char *port) {
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG };
        struct addrinfo *ai = NULL;
        int r, fd = -EBADF, err = ECONNREFUSED;

        r = getaddrinfo(host, port, &hints, &ai);
        if (r != 0)
                return error_errno(EHOSTUNREACH, "cannot resolve '%s': %s", host, gai_strerror(r));

        for (struct addrinfo *a = ai; a; a = a->ai_next) {
                fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
                if (fd < 0) {
                        err = errno;
                        continue;
                }
                if (connect(fd, a->ai_addr, a->ai_addrlen) >= 0)
                        break;
                err = errno;
                fd = safe_close(fd);
        }
        freeaddrinfo(ai);
        if (fd < 0)
                return error_errno(err, "cannot connect to %s port %s: %m", host, port);
        return fd;
}

int nbd_uri_connect(const char *uri, int *ret_fd, char **ret_export) {
        _cleanup_(freep) char *export = NULL, *socket_path = NULL, *host = NULL, *port = NULL;
        const char *rest, *path, *query;
        int fd;

        if (startswith(uri, "nbds"))
                return error_errno(EPROTONOSUPPORT, "fuseloopctl does not speak TLS; map '%s' with MapURI "
                                   "(busctl), where fuseloopd connects itself", uri);

        rest = startswith(uri, "nbd+unix://") ?: startswith(uri, "nbd://");
        query = strchr(rest, '?');
        path = strchr(rest, '/');
        if (path && query && path > query)
                path = NULL;

        /* The export name is the path without its first slash. */
        if (path) {
                size_t n = (size_t) ((query ?: path + strlen(path)) - path);

                export = decode(path + 1, n > 0 ? n - 1 : 0);
        } else
                export = strdup("");
        if (!export)
                return error_errno(errno, "invalid export name in '%s': %m", uri);

        if (startswith(uri, "nbd+unix://")) {
                if (rest[0] != '/' && rest[0] != '?')
                        return error_errno(EINVAL, "'%s': a Unix socket URI has no host (nbd+unix:///EXPORT?socket=PATH)",
                                           uri);
                socket_path = query ? query_get(query + 1, "socket") : NULL;
                if (!socket_path)
                        return error_errno(EINVAL, "'%s' names no socket (nbd+unix:///EXPORT?socket=PATH)", uri);
                fd = connect_unix(socket_path);
        } else {
                const char *end = path ?: query ?: rest + strlen(rest), *colon;

                if (rest[0] == '[') {
                        const char *close = memchr(rest, ']', (size_t) (end - rest));

                        if (!close)
                                return error_errno(EINVAL, "'%s': unterminated [address]", uri);
                        host = strndup(rest + 1, (size_t) (close - rest - 1));
                        colon = close + 1 < end && close[1] == ':' ? close + 1 : NULL;
                } else {
                        colon = memchr(rest, ':', (size_t) (end - rest));
                        host = strndup(rest, (size_t) ((colon ?: end) - rest));
                }
                port = colon ? strndup(colon + 1, (size_t) (end - colon - 1)) : strdup(NBD_DEFAULT_PORT);
                if (!host || !port)
                        return error_errno(ENOMEM, "out of memory");
                if (isempty(host))
                        return error_errno(EINVAL, "'%s' names no host (nbd://HOST[:PORT]/EXPORT)", uri);
                fd = connect_tcp(host, port);
        }
        if (fd < 0)
                return fd;

        *ret_fd = fd;
        *ret_export = TAKE_PTR(export);
        return 0;
}
