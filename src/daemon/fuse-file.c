/* One mapping's FUSE session: a single read-only regular file, served from the event loop.
 *
 * The session is a libfuse low-level session mounted on a regular file in the run directory. Its
 * fd is non-blocking and an sd-event io source; read requests are handed to the source and
 * answered when the source completes them, so no request ever waits on the loop thread. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuse-file.h"
#include "log.h"
#include "macro.h"

/* Requests taken per wakeup, so one busy mapping cannot starve the others. */
#define FUSE_BATCH 32

/* The file never changes while mapped: let the kernel keep its attributes for a year. */
#define ATTR_TIMEOUT (365.0 * 24 * 3600)

struct FuseFile {
        char *name;
        char *path;
        Source *source;
        uint64_t offset, size;

        struct fuse_session *session;
        struct fuse_buf buf;
        sd_event_source *io;
        bool mounted;

        FuseFileGone gone;
        void *gone_userdata;

        unsigned n_in_flight;
        FuseFileStats stats;

        void (*drained)(void *userdata);
        void *drained_userdata;
};

typedef struct ReadRequest {
        FuseFile *file;
        fuse_req_t req;
        uint8_t data[];
} ReadRequest;

static void fuse_file_stat(const FuseFile *f, struct stat *st) {
        *st = (struct stat) {
                .st_ino = FUSE_ROOT_ID,
                .st_mode = S_IFREG | 0444,
                .st_nlink = 1,
                .st_size = (off_t) f->size,
                .st_blksize = 4096,
                .st_blocks = (blkcnt_t) ((f->size + 511) / 512),
        };
}

static void op_init(void *userdata _unused_, struct fuse_conn_info *conn) {
        /* Read-only: no writeback cache. Several reads may be in flight (async read and async
         * direct I/O are libfuse defaults we rely on). */
        conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
        conn->max_background = 64;
        conn->congestion_threshold = 48;
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi _unused_) {
        FuseFile *f = fuse_req_userdata(req);
        struct stat st;

        if (ino != FUSE_ROOT_ID) {
                (void) fuse_reply_err(req, ENOENT);
                return;
        }
        fuse_file_stat(f, &st);
        (void) fuse_reply_attr(req, &st, ATTR_TIMEOUT);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent _unused_, const char *name _unused_) {
        /* The root is a file: there is nothing to look up. */
        (void) fuse_reply_err(req, ENOENT);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
        if (ino != FUSE_ROOT_ID) {
                (void) fuse_reply_err(req, ENOENT);
                return;
        }
        if ((fi->flags & O_ACCMODE) != O_RDONLY) {
                (void) fuse_reply_err(req, EROFS);
                return;
        }

        /* noflush: the close() of this file must not wait for a FLUSH round trip to us (closes
         * may run where we cannot answer). keep_cache: the data never changes under us. */
        fi->noflush = 1;
        fi->keep_cache = 1;
        (void) fuse_reply_open(req, fi);
}

static void op_release(fuse_req_t req, fuse_ino_t ino _unused_, struct fuse_file_info *fi _unused_) {
        (void) fuse_reply_err(req, 0);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino _unused_, struct fuse_file_info *fi _unused_) {
        (void) fuse_reply_err(req, 0);
}

static void on_read_done(int result, void *userdata) {
        ReadRequest *rr = userdata;
        FuseFile *f = rr->file;

        if (result < 0) {
                f->stats.read_errors++;
                log_debug_errno(result, "Mapping '%s': source read failed: %m, answering EIO", f->name);
                (void) fuse_reply_err(rr->req, EIO);
        } else {
                f->stats.bytes_read += (uint64_t) result;
                (void) fuse_reply_buf(rr->req, (const char *) rr->data, (size_t) result);
        }

        f->n_in_flight--;
        free(rr);

        if (f->n_in_flight == 0 && f->drained) {
                void (*drained)(void *) = f->drained;

                f->drained = NULL;
                drained(f->drained_userdata);
        }
}

static void op_read(fuse_req_t req, fuse_ino_t ino _unused_, size_t size, off_t off,
                    struct fuse_file_info *fi _unused_) {
        FuseFile *f = fuse_req_userdata(req);
        ReadRequest *rr;
        size_t len;
        int r;

        f->stats.read_requests++;

        /* The page cache asks for whole pages past the end of the file: a short (or empty) read
         * at EOF is the right answer, not an error. */
        if (off < 0 || (uint64_t) off >= f->size) {
                (void) fuse_reply_buf(req, NULL, 0);
                return;
        }
        len = (size_t) MIN((uint64_t) size, f->size - (uint64_t) off);

        rr = malloc(sizeof(*rr) + len);
        if (!rr) {
                f->stats.read_errors++;
                (void) fuse_reply_err(req, ENOMEM);
                return;
        }
        *rr = (ReadRequest) { .file = f, .req = req };

        r = source_read(f->source, rr->data, len, f->offset + (uint64_t) off, on_read_done, rr);
        if (r < 0) {
                f->stats.read_errors++;
                free(rr);
                (void) fuse_reply_err(req, EIO);
                return;
        }
        f->n_in_flight++;
}

static const struct fuse_lowlevel_ops fuse_file_ops = {
        .init = op_init,
        .lookup = op_lookup,
        .getattr = op_getattr,
        .open = op_open,
        .read = op_read,
        .flush = op_flush,
        .release = op_release,
};

static void on_fuse_log(enum fuse_log_level level, const char *fmt, va_list ap) {
        char buf[1024];
        size_t n;

        (void) vsnprintf(buf, sizeof(buf), fmt, ap);
        n = strlen(buf);
        if (n > 0 && buf[n - 1] == '\n')
                buf[n - 1] = '\0';
        /* libfuse reports things like ENOENT replies to INIT on resume as errors; we decide. */
        (void) log_full_errno(level <= FUSE_LOG_ERR ? LOG_WARNING : LOG_DEBUG, 0, "libfuse: %s", buf);
}

void fuse_file_setup_logging(void) {
        fuse_set_log_func(on_fuse_log);
}

int fuse_file_new(const char *name, const char *path, Source *source, uint64_t offset, uint64_t size,
                  FuseFile **ret) {
        struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
        _cleanup_(freep) char *opts = NULL;
        FuseFile *f;
        int r;

        f = calloc(1, sizeof(*f));
        if (!f)
                return -ENOMEM;
        f->name = strdup(name);
        f->path = strdup(path);
        f->source = source;
        f->offset = offset;
        f->size = size;
        if (!f->name || !f->path) {
                r = -ENOMEM;
                goto fail;
        }

        /* Names are restricted to [A-Za-z0-9._:@+-], so they cannot break the option string. No
         * allow_other: only root opens the file (the loop device reads through the file we
         * opened), so nobody else needs to. */
        if (asprintf(&opts, "ro,default_permissions,fsname=fuseloop:%s,subtype=fuseloop",
                     name) < 0) {
                r = -ENOMEM;
                goto fail;
        }
        if (fuse_opt_add_arg(&args, "fuseloopd") < 0 ||
            fuse_opt_add_arg(&args, "-o") < 0 ||
            fuse_opt_add_arg(&args, opts) < 0) {
                fuse_opt_free_args(&args);
                r = -ENOMEM;
                goto fail;
        }

        f->session = fuse_session_new(&args, &fuse_file_ops, sizeof(fuse_file_ops), f);
        fuse_opt_free_args(&args);
        if (!f->session) {
                r = -EINVAL;
                goto fail;
        }

        *ret = f;
        return 0;

fail:
        fuse_file_free(f);
        return r;
}

int fuse_file_mount(FuseFile *f) {
        /* Runs on a worker. */
        if (fuse_session_mount(f->session, f->path) < 0)
                return -EIO;

        f->mounted = true;
        return 0;
}

static int on_fuse_io(sd_event_source *s _unused_, int fd _unused_, uint32_t revents _unused_, void *userdata) {
        FuseFile *f = userdata;

        for (unsigned i = 0; i < FUSE_BATCH; i++) {
                int r = fuse_session_receive_buf(f->session, &f->buf);

                if (r == -EINTR)
                        continue;
                if (r == -EAGAIN)
                        break;
                if (r <= 0 || fuse_session_exited(f->session)) {
                        /* 0 (ENODEV): unmounted; anything else: the connection is unusable. */
                        log_debug_errno(r, "Mapping '%s': FUSE session ended: %m", f->name);
                        /* Reads taken in this batch still go out, so that they complete and the
                         * session can drain. */
                        source_flush(f->source);
                        fuse_file_stop(f);
                        if (f->gone)
                                f->gone(f, f->gone_userdata);
                        return 0;
                }

                fuse_session_process_buf(f->session, &f->buf);
        }

        source_flush(f->source);
        return 0;
}

int fuse_file_start(FuseFile *f, sd_event *e, FuseFileGone gone, void *userdata) {
        int fd = fuse_session_fd(f->session);
        int flags, r;

        flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return -errno;

        r = sd_event_add_io(e, &f->io, fd, EPOLLIN, on_fuse_io, f);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(f->io, "fuse");

        f->gone = gone;
        f->gone_userdata = userdata;
        return 0;
}

void fuse_file_stop(FuseFile *f) {
        f->io = sd_event_source_disable_unref(f->io);
}

bool fuse_file_drain(FuseFile *f, void (*drained)(void *userdata), void *userdata) {
        assert(!f->io);
        if (f->n_in_flight == 0)
                return false;
        f->drained = drained;
        f->drained_userdata = userdata;
        return true;
}

unsigned fuse_file_n_in_flight(const FuseFile *f) {
        return f->n_in_flight;
}

void fuse_file_unmount(FuseFile *f) {
        /* Runs on a worker. libfuse closes the fd before it unmounts (lazily, as root), so the
         * unmount cannot wait for an answer from us. */
        assert(!f->io);
        if (f->mounted)
                fuse_session_unmount(f->session);
        f->mounted = false;
}

FuseFile *fuse_file_free(FuseFile *f) {
        if (!f)
                return NULL;

        assert(f->n_in_flight == 0);
        fuse_file_stop(f);
        if (f->session)
                fuse_session_destroy(f->session);
        free(f->buf.mem);
        free(f->path);
        free(f->name);
        free(f);
        return NULL;
}

const FuseFileStats *fuse_file_get_stats(const FuseFile *f) {
        return &f->stats;
}
