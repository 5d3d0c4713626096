/* One mapping's FUSE session: a single read-only regular file, served from the event loop.
 *
 * The session is a libfuse low-level session mounted on a regular file in the run directory. Its
 * fd is non-blocking and an sd-event io source; read requests are handed to the source and
 * answered when the source completes them, so no request ever waits on the loop thread.
 *
 * A source may stall (a hung network file system, a dying disk). Reads handed to it are kept in
 * arrival order, and one timer per session watches the oldest: with a timeout, a read that waits
 * longer is answered with EIO at its deadline, and a session whose oldest read has waited longer
 * than the stall threshold reports itself stalled. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fuse.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fuse-file.h"
#include "log.h"
#include "macro.h"

/* Messages about the session are messages about its mapping: "Mapping '<name>': ...", and in the
 * journal MAPPING= and DEVICE=. */
#define log_file_full_errno(f, level, error, fmt, ...)                                           \
        log_object_full_errno((level), (error), (f)->name, (f)->device, "Mapping '%s': " fmt, (f)->name, \
                              ##__VA_ARGS__)
#define log_file_debug(f, ...)   (void) log_file_full_errno(f, LOG_DEBUG, 0, __VA_ARGS__)
#define log_file_notice(f, ...)  (void) log_file_full_errno(f, LOG_NOTICE, 0, __VA_ARGS__)
#define log_file_warning(f, ...) (void) log_file_full_errno(f, LOG_WARNING, 0, __VA_ARGS__)
#define log_file_debug_errno(f, e, ...)   log_file_full_errno(f, LOG_DEBUG, e, __VA_ARGS__)
#define log_file_notice_errno(f, e, ...)  log_file_full_errno(f, LOG_NOTICE, e, __VA_ARGS__)
#define log_file_warning_errno(f, e, ...) log_file_full_errno(f, LOG_WARNING, e, __VA_ARGS__)

/* FUSE passthrough (Linux 6.9, protocol 7.40), missing from older <linux/fuse.h> (Debian 12 ships
 * the 6.1 one). Values from the kernel's ABI. */
#ifndef FUSE_INIT_EXT
#define FUSE_INIT_EXT (1u << 30)
#endif
#ifndef FUSE_PASSTHROUGH
#define FUSE_PASSTHROUGH (UINT64_C(1) << 37)
#endif
#ifndef FOPEN_NOFLUSH
#define FOPEN_NOFLUSH (1u << 5)
#endif
#ifndef FOPEN_PASSTHROUGH
#define FOPEN_PASSTHROUGH (1u << 7)
#endif
#ifndef FUSE_DEV_IOC_BACKING_OPEN
struct fuse_backing_map {
        int32_t fd;
        uint32_t flags;
        uint64_t padding;
};
#define FUSE_DEV_IOC_MAGIC 229
#define FUSE_DEV_IOC_BACKING_OPEN _IOW(FUSE_DEV_IOC_MAGIC, 1, struct fuse_backing_map)
#endif

/* The protocol minor that introduced passthrough; our INIT reply offers no more than that. */
#define PASSTHROUGH_MINOR 40u

/* struct fuse_init_out and struct fuse_open_out as of protocol 7.40: older headers call
 * max_stack_depth and backing_id unused/padding. Same sizes as in every header. */
typedef struct InitOut {
        uint32_t major;
        uint32_t minor;
        uint32_t max_readahead;
        uint32_t flags;
        uint16_t max_background;
        uint16_t congestion_threshold;
        uint32_t max_write;
        uint32_t time_gran;
        uint16_t max_pages;
        uint16_t map_alignment;
        uint32_t flags2;
        uint32_t max_stack_depth;
        uint32_t unused[6];
} InitOut;
_Static_assert(sizeof(InitOut) == sizeof(struct fuse_init_out), "fuse_init_out layout");

typedef struct OpenOut {
        uint64_t fh;
        uint32_t open_flags;
        int32_t backing_id;
} OpenOut;
_Static_assert(sizeof(OpenOut) == sizeof(struct fuse_open_out), "fuse_open_out layout");

/* Requests taken per wakeup, so one busy mapping cannot starve the others. */
#define FUSE_BATCH 32

/* The file never changes while mapped: let the kernel keep its attributes for a year. */
#define ATTR_TIMEOUT (365.0 * 24 * 3600)

/* Requests the kernel may have in flight for us, and the number at which it holds back
 * readahead. */
#define FUSE_FILE_MAX_BACKGROUND 64
#define FUSE_FILE_CONGESTION_THRESHOLD 48

/* Pages per request: libfuse's limit (FUSE_MAX_MAX_PAGES), 1 MiB with 4 KiB pages. */
#define FUSE_FILE_MAX_PAGES 256u

/* Deadlines are seconds apart: let sd-event coalesce the wakeup with others within 50 ms. */
#define DEADLINE_ACCURACY_USEC (50ULL * 1000ULL)

typedef struct ReadRequest ReadRequest;

/* Reads in arrival order: appended at the tail, the oldest at the head, any one unlinked in O(1)
 * when the source completes it (sources complete in any order). */
typedef struct ReadList {
        ReadRequest *head, *tail;
} ReadList;

struct FuseFile {
        char *name;
        char device[32];         /* for log messages: "/dev/loopN", "" until known */
        char *path;
        Source *source;
        uint64_t offset, size;

        struct fuse_session *session;
        struct fuse_buf buf;
        sd_event_source *io;
        bool initialized;        /* libfuse saw FUSE_INIT (the kernel's, or the replayed one) */

        /* The kernel's FUSE_INIT request as received: a restarted daemon replays it to libfuse. */
        uint8_t *init;
        size_t init_size;

        /* Passthrough: the file to register with the connection until that was tried (-EBADF when
         * not asked for), and the id the kernel gave it (0: none, reads come to us). */
        int passthrough_fd;
        int32_t backing_id;

        FuseFileGone gone;
        void *gone_userdata;

        /* Reads given to the source and not completed by it yet: those in waiting, those in
         * timed_out. */
        unsigned n_in_flight;
        FuseFileStats stats;

        /* Every request in waiting arrived after every request in timed_out: all share one
         * timeout, so they time out in arrival order and move over in that order. The oldest read
         * in flight is therefore the head of timed_out, else the head of waiting. */
        ReadList waiting;        /* the kernel still waits for the answer */
        ReadList timed_out;      /* answered with EIO at the deadline; the source still reads */
        uint64_t timeout_usec;   /* 0: reads wait as long as the source takes */
        uint64_t stall_usec;
        bool stalled;
        FuseFileStalled on_stalled;
        void *stalled_userdata;
        /* One timer for all reads, armed for the earliest deadline or stall check that matters,
         * never later. Re-armed only when that moves earlier: when a read completes, a timer that
         * fires too early finds nothing due and is armed again, which is cheaper than moving it
         * with every request. */
        sd_event_source *timer;
        uint64_t timer_usec;     /* when the timer fires; 0 while it is off */

        void (*drained)(void *userdata);
        void *drained_userdata;
};

/* One read handed to the source. The source writes into data until it completes the read, so the
 * record lives until then, also when the kernel got its answer (EIO) at the deadline already:
 * only on_read_done() frees it. */
struct ReadRequest {
        FuseFile *file;
        fuse_req_t req;          /* NULL once answered at the deadline */
        uint64_t start_usec;     /* arrival, CLOCK_MONOTONIC (0 without fuse_file_set_timeout()) */
        ReadRequest *prev, *next;
        uint8_t data[];
};

static void read_list_append(ReadList *l, ReadRequest *rr) {
        rr->next = NULL;
        rr->prev = l->tail;
        if (l->tail)
                l->tail->next = rr;
        else
                l->head = rr;
        l->tail = rr;
}

static void read_list_remove(ReadList *l, ReadRequest *rr) {
        if (rr->prev)
                rr->prev->next = rr->next;
        else
                l->head = rr->next;
        if (rr->next)
                rr->next->prev = rr->prev;
        else
                l->tail = rr->prev;
        rr->prev = rr->next = NULL;
}

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

static void op_init(void *userdata, struct fuse_conn_info *conn) {
        FuseFile *f = userdata;

        f->initialized = true;
        /* Read-only: no writeback cache. Several reads may be in flight (async read and async
         * direct I/O are libfuse defaults we rely on). */
        conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
        conn->max_background = FUSE_FILE_MAX_BACKGROUND;
        conn->congestion_threshold = FUSE_FILE_CONGESTION_THRESHOLD;
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

/* The read that has waited longest for the source, answered or not. */
static ReadRequest *fuse_file_oldest(const FuseFile *f) {
        return f->timed_out.head ?: f->waiting.head;
}

/* When the timer must fire next, or UINT64_MAX if nothing is due: the deadline of the oldest read
 * that is still unanswered, and, while not stalled, the moment the oldest read turns stalled. */
static uint64_t fuse_file_next_wakeup(const FuseFile *f) {
        ReadRequest *oldest = fuse_file_oldest(f);
        uint64_t t = UINT64_MAX;

        if (f->timeout_usec > 0 && f->waiting.head)
                t = f->waiting.head->start_usec + f->timeout_usec;
        if (oldest && !f->stalled)
                t = MIN(t, oldest->start_usec + f->stall_usec);
        return t;
}

static void fuse_file_arm_timer(FuseFile *f) {
        uint64_t t;
        int r;

        if (!f->timer)
                return;

        t = fuse_file_next_wakeup(f);
        /* Nothing due, or the timer fires before it anyway. */
        if (t == UINT64_MAX || (f->timer_usec != 0 && f->timer_usec <= t))
                return;

        r = sd_event_source_set_time(f->timer, t);
        if (r >= 0)
                r = sd_event_source_set_enabled(f->timer, SD_EVENT_ONESHOT);
        if (r < 0) {
                /* Only deadlines and the stall report are lost; reads are still answered when the
                 * source completes them. */
                log_file_warning_errno(f, r, "cannot arm the read timer: %m, ignoring");
                return;
        }
        f->timer_usec = t;
}

static void fuse_file_update_stalled(FuseFile *f, uint64_t now) {
        ReadRequest *oldest = fuse_file_oldest(f);
        bool stalled = oldest && now >= oldest->start_usec + f->stall_usec;

        if (stalled == f->stalled)
                return;
        f->stalled = stalled;

        if (stalled)
                log_file_warning(f, "a read of the source has waited for more than %" PRIu64
                                 " ms; stalled.", f->stall_usec / 1000);
        else
                log_file_notice(f, "the source completed its oldest read; no longer stalled.");
        if (f->on_stalled)
                f->on_stalled(f, stalled, f->stalled_userdata);
}

static int on_read_timer(sd_event_source *s, uint64_t usec _unused_, void *userdata) {
        FuseFile *f = userdata;
        ReadRequest *rr;
        uint64_t now;

        f->timer_usec = 0;  /* a oneshot timer is off once it fired */
        if (sd_event_now(sd_event_source_get_event(s), CLOCK_MONOTONIC, &now) < 0)
                return 0;

        /* Answer every read past its deadline. Its record stays in flight, now on timed_out,
         * until the source completes it: the source owns the buffer until then. */
        while (f->timeout_usec > 0 && (rr = f->waiting.head) && now >= rr->start_usec + f->timeout_usec) {
                read_list_remove(&f->waiting, rr);
                read_list_append(&f->timed_out, rr);
                f->stats.read_errors++;
                f->stats.timed_out_reads++;
                histogram_add(&f->stats.read_latency_usec, now - rr->start_usec);
                log_file_debug(f, "a read has waited for the source longer than the timeout (%" PRIu64
                               " ms), answering EIO", f->timeout_usec / 1000);
                (void) fuse_reply_err(rr->req, EIO);
                rr->req = NULL;
        }

        fuse_file_update_stalled(f, now);
        fuse_file_arm_timer(f);
        return 0;
}

static void on_read_done(int result, void *userdata) {
        ReadRequest *rr = userdata;
        FuseFile *f = rr->file;
        bool was_oldest = rr == fuse_file_oldest(f);

        if (!rr->req) {
                /* Answered with EIO at its deadline already: the late result goes nowhere. */
                if (result < 0)
                        log_file_debug_errno(f, result, "a read failed after its timeout: %m, ignoring");
                else
                        log_file_debug(f, "a read completed after its timeout, dropping the data");
                read_list_remove(&f->timed_out, rr);
        } else {
                uint64_t now;

                read_list_remove(&f->waiting, rr);
                /* The time of this loop iteration, as for the arrival: no system call per read. */
                if (f->timer && sd_event_now(sd_event_source_get_event(f->timer), CLOCK_MONOTONIC, &now) >= 0)
                        histogram_add(&f->stats.read_latency_usec, now > rr->start_usec ? now - rr->start_usec : 0);
                if (result < 0) {
                        f->stats.read_errors++;
                        log_file_debug_errno(f, result, "source read failed: %m, answering EIO");
                        (void) fuse_reply_err(rr->req, EIO);
                } else {
                        f->stats.bytes_read += (uint64_t) result;
                        (void) fuse_reply_buf(rr->req, (const char *) rr->data, (size_t) result);
                }
        }

        f->n_in_flight--;
        free(rr);

        /* Only the oldest read decides whether the session is stalled. While it is not, the timer
         * is armed no later than needed for the new oldest; after a stall it may have to be
         * armed for the new oldest's stall check. */
        if (was_oldest && f->stalled && f->timer) {
                uint64_t now;

                if (sd_event_now(sd_event_source_get_event(f->timer), CLOCK_MONOTONIC, &now) >= 0) {
                        fuse_file_update_stalled(f, now);
                        fuse_file_arm_timer(f);
                }
        }

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
        uint64_t usec;
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

        /* What the page cache holds needs no trip through the ring: answered at once, counted with
         * the read's own duration. */
        if (source_read_now(f->source, rr->data, len, f->offset + (uint64_t) off, &usec)) {
                f->stats.bytes_read += len;
                histogram_add(&f->stats.read_latency_usec, usec);
                (void) fuse_reply_buf(req, (const char *) rr->data, len);
                free(rr);
                return;
        }

        /* The time of this loop iteration: no system call per request. */
        if (f->timer)
                (void) sd_event_now(sd_event_source_get_event(f->timer), CLOCK_MONOTONIC, &rr->start_usec);

        r = source_read(f->source, rr->data, len, f->offset + (uint64_t) off, on_read_done, rr);
        if (r < 0) {
                f->stats.read_errors++;
                free(rr);
                (void) fuse_reply_err(req, EIO);
                return;
        }
        f->n_in_flight++;
        read_list_append(&f->waiting, rr);
        /* A timer that is on fires no later than this read's deadline: it arrived last. */
        if (f->timer_usec == 0)
                fuse_file_arm_timer(f);
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
        f->passthrough_fd = -EBADF;
        if (!f->name || !f->path) {
                r = -ENOMEM;
                goto fail;
        }

        /* No session options: the daemon mounts the file itself (fuse_file_mount()), libfuse
         * only speaks the protocol on the fd. */
        if (fuse_opt_add_arg(&args, "fuseloopd") < 0) {
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

/* A reply's unique that the kernel never hands out: its request ids are even and count up from
 * zero (odd ones are interrupts), and FUSE_NOTIFY_RESEND sets bit 63. The reply to the replayed
 * INIT is sent with it, finds no request and is dropped with ENOENT, which libfuse ignores. */
#define REPLAYED_INIT_UNIQUE (UINT64_C(1) << 62)

/* FUSE_NOTIFY_RESEND (Linux 6.9, protocol 7.40): the kernel queues every request that was read
 * from the connection but not answered once more. Older headers lack it. */
#define FUSE_NOTIFY_RESEND_CODE 7

/* Hands libfuse an open /dev/fuse fd (as "/dev/fd/N", which it adopts instead of mounting). The
 * session owns the fd from here on, and fuse_session_destroy() closes it. */
static int fuse_file_adopt(FuseFile *f, int fuse_fd) {
        char path[32];

        (void) snprintf(path, sizeof(path), "/dev/fd/%i", fuse_fd);
        if (fuse_session_mount(f->session, path) < 0) {
                (void) safe_close(fuse_fd);
                return -EBADF;
        }
        return 0;
}

/* Gives libfuse a copy of the kernel's FUSE_INIT request init (h.len bytes, checked by the
 * caller) under REPLAYED_INIT_UNIQUE, so that it serves the requests that follow. Its reply goes
 * nowhere. Returns 0, -ENOMEM, or -EPROTO if libfuse refused it. */
static int fuse_file_replay_init(FuseFile *f, const uint8_t *init, size_t init_size) {
        _cleanup_(freep) uint8_t *copy = NULL;
        struct fuse_in_header h;
        struct fuse_buf buf = {};

        copy = memdup(init, init_size);
        if (!copy)
                return -ENOMEM;
        memcpy(&h, init, sizeof(h));
        h.unique = REPLAYED_INIT_UNIQUE;
        memcpy(copy, &h, sizeof(h));
        buf.mem = copy;
        buf.size = init_size;
        fuse_session_process_buf(f->session, &buf);
        return f->initialized ? 0 : -EPROTO;
}

/* Writes one reply: a header for unique and arg_size bytes of arg. Returns 0 or -errno (the
 * kernel checks the reply as it takes it: a write error means it was refused). */
static int fuse_file_reply(FuseFile *f, uint64_t unique, const void *arg, size_t arg_size) {
        struct fuse_out_header h = {
                .len = (uint32_t) (sizeof(h) + arg_size),
                .unique = unique,
        };
        struct iovec iov[2] = {
                { .iov_base = &h, .iov_len = sizeof(h) },
                { .iov_base = (void *) arg, .iov_len = arg_size },
        };
        ssize_t n;

        n = writev(fuse_session_fd(f->session), iov, ELEMENTSOF(iov));
        if (n < 0)
                return -errno;
        return (size_t) n == h.len ? 0 : -EIO;
}

/* Registers the passthrough file with the connection, once; the kernel then holds the file and
 * our copy of the fd goes. On failure (EPERM: the connection did not negotiate passthrough or we
 * lack CAP_SYS_ADMIN; ELOOP: the file lives on a stacking file system such as overlayfs) reads
 * stay with the daemon.
 *
 * The registration is never closed (FUSE_DEV_IOC_BACKING_CLOSE): the kernel drops it with the
 * connection, and until then a restarted daemon needs it (fuse_file_adopt_passthrough()). */
static void fuse_file_register_backing(FuseFile *f) {
        struct fuse_backing_map map = { .fd = f->passthrough_fd };
        int id;

        if (f->passthrough_fd < 0)
                return;

        id = ioctl(fuse_session_fd(f->session), FUSE_DEV_IOC_BACKING_OPEN, &map);
        if (id <= 0)
                (void) log_file_notice_errno(f, id < 0 ? errno : EPROTO, "the kernel refused the passthrough file: "
                                             "%m; serving reads from the source.");
        else {
                f->backing_id = id;
                log_file_debug(f, "reads pass through to the source in the kernel (backing id %i).", id);
        }
        f->passthrough_fd = safe_close(f->passthrough_fd);
}

/* Answers the kernel's FUSE_INIT (the first request of a fresh connection, in f->buf) with
 * passthrough, which libfuse 3.14 cannot negotiate, and primes libfuse with a replayed copy.
 * Returns true if the request was answered, false if libfuse must answer it as usual (the kernel
 * offers no passthrough, or refused our reply). */
static bool fuse_file_answer_init(FuseFile *f) {
        struct fuse_in_header h;
        struct fuse_init_in in = {};
        uint64_t offered, flags;
        InitOut out;
        long page_size = sysconf(_SC_PAGESIZE);
        int r;

        /* Without a copy of the request (out of memory) it cannot be replayed to libfuse. */
        if (!f->init || f->init_size < sizeof(h) + offsetof(struct fuse_init_in, flags2)) {
                f->passthrough_fd = safe_close(f->passthrough_fd);
                return false;
        }
        memcpy(&h, f->init, sizeof(h));
        /* Kernels before 5.17 send no flags2 (and no passthrough). */
        memcpy(&in, f->init + sizeof(h), MIN(f->init_size - sizeof(h), sizeof(in)));
        offered = in.flags;
        if (offered & FUSE_INIT_EXT)
                offered |= (uint64_t) in.flags2 << 32;
        if (in.major != FUSE_KERNEL_VERSION || in.minor < PASSTHROUGH_MINOR || !(offered & FUSE_PASSTHROUGH)) {
                log_file_notice(f, "the kernel (FUSE %" PRIu32 ".%" PRIu32 ") offers no passthrough; "
                                "serving reads from the source.", in.major, in.minor);
                f->passthrough_fd = safe_close(f->passthrough_fd);
                return false;
        }

        /* Of what libfuse 3.14 negotiates for this session, what reads of one read-only file use:
         * async reads, async direct I/O, 1 MiB requests, our background limits, the kernel's
         * readahead; no flags for directories, locks, writes or cache invalidation (the file
         * never changes). Plus passthrough, so that reads fall back to the same path if the
         * backing file is refused. The file system stacks one level on the backing file's: a
         * backing file on a stacking file system (overlayfs) is refused with ELOOP. */
        flags = FUSE_ASYNC_READ | FUSE_ASYNC_DIO | FUSE_MAX_PAGES | FUSE_INIT_EXT | FUSE_PASSTHROUGH;
        flags &= offered;
        out = (InitOut) {
                .major = FUSE_KERNEL_VERSION,
                .minor = MIN(in.minor, PASSTHROUGH_MINOR),
                .max_readahead = in.max_readahead,
                .flags = (uint32_t) flags,
                .flags2 = (uint32_t) (flags >> 32),
                .max_background = FUSE_FILE_MAX_BACKGROUND,
                .congestion_threshold = FUSE_FILE_CONGESTION_THRESHOLD,
                .max_write = FUSE_FILE_MAX_PAGES * (uint32_t) page_size,
                .time_gran = 1,
                .max_pages = FUSE_FILE_MAX_PAGES,
                .max_stack_depth = 1,
        };
        r = fuse_file_reply(f, h.unique, &out, sizeof(out));
        if (r < 0) {
                (void) log_file_notice_errno(f, r, "the kernel refused a FUSE_INIT reply with passthrough: %m; "
                                             "serving reads from the source.");
                f->passthrough_fd = safe_close(f->passthrough_fd);
                return false;
        }

        /* The connection is set up. libfuse never answers the kernel's INIT now, but it needs to
         * see one. */
        r = fuse_file_replay_init(f, f->init, f->init_size);
        if (r < 0)
                log_file_warning_errno(f, r, "libfuse did not take the replayed FUSE_INIT: %m; requests "
                                       "will fail");
        fuse_file_register_backing(f);
        return true;
}

/* Answers a FUSE_OPEN (in f->buf) with passthrough, after the checks op_open() makes. Returns true
 * if it was answered, false if libfuse must answer it (an error, or the kernel refused ours). */
static bool fuse_file_answer_open(FuseFile *f) {
        struct fuse_in_header h;
        struct fuse_open_in in;
        OpenOut out;
        int r;

        if (f->buf.size < sizeof(h) + sizeof(in))
                return false;
        memcpy(&h, f->buf.mem, sizeof(h));
        memcpy(&in, (const uint8_t *) f->buf.mem + sizeof(h), sizeof(in));
        if (h.len < sizeof(h) + sizeof(in) || h.nodeid != FUSE_ROOT_ID || (in.flags & O_ACCMODE) != O_RDONLY)
                return false;

        /* noflush: the close() of this file must not wait for a FLUSH round trip to us (see
         * op_open()). No keep_cache: the file has no page cache of its own, the backing file's
         * serves. */
        out = (OpenOut) {
                .open_flags = FOPEN_PASSTHROUGH | FOPEN_NOFLUSH,
                .backing_id = f->backing_id,
        };
        r = fuse_file_reply(f, h.unique, &out, sizeof(out));
        if (r < 0) {
                log_file_debug_errno(f, r, "the kernel refused a passthrough open: %m, opening without");
                return false;
        }
        return true;
}

int fuse_file_set_passthrough(FuseFile *f, int backing_fd) {
        int fd;

        if (f->offset != 0)
                return -EINVAL;
        if (f->initialized)
                return -EBUSY;

        fd = fcntl(backing_fd, F_DUPFD_CLOEXEC, 3);
        if (fd < 0)
                return -errno;
        (void) safe_close(f->passthrough_fd);
        f->passthrough_fd = fd;
        return 0;
}

bool fuse_file_passthrough_active(const FuseFile *f) {
        return f->backing_id > 0;
}

int fuse_file_get_passthrough_id(const FuseFile *f) {
        return f->backing_id;
}

int fuse_file_adopt_passthrough(FuseFile *f, int backing_id) {
        /* Linux 6.18 keeps one backing file per FUSE inode while any file is open through
         * passthrough, and fails every open (EIO) that brings another one (a new registration of
         * the same file included) or none: the loop device's file, opened before the restart, pins
         * the registration made then. Registrations live as long as the connection, so the id is
         * still good. */
        if (backing_id <= 0)
                return -EINVAL;
        if (!f->initialized)
                return -EBUSY;

        f->backing_id = backing_id;
        log_file_debug(f, "reads pass through to the source in the kernel (backing id %i, adopted).", backing_id);
        return 0;
}

int fuse_file_resume(FuseFile *f, int fuse_fd, const uint8_t *init, size_t init_size) {
        struct fuse_out_header resend = {
                .len = sizeof(struct fuse_out_header),
                .error = FUSE_NOTIFY_RESEND_CODE,
        };
        struct fuse_in_header h;
        int r;

        if (init_size < sizeof(h) || init_size > FUSE_FILE_INIT_MAX)
                return -EINVAL;
        memcpy(&h, init, sizeof(h));
        if (h.opcode != FUSE_INIT || h.len != init_size)
                return -EINVAL;

        r = fuse_file_adopt(f, fuse_fd);
        if (r < 0)
                return r;

        /* libfuse refuses every request until it has seen FUSE_INIT, and the kernel sends that
         * only once per connection. Replay the original one: libfuse negotiates exactly what it
         * did then (same request, same session options), so its state matches the connection's
         * (which may have passthrough on top, negotiated by us, not libfuse). */
        f->init = memdup(init, init_size);
        if (!f->init)
                return -ENOMEM;
        f->init_size = init_size;
        r = fuse_file_replay_init(f, init, init_size);
        if (r < 0)
                return r;

        /* Passthrough continues only through fuse_file_adopt_passthrough(): a file registered anew
         * could serve no open while any file opened through the earlier registration, or opened
         * without passthrough, is still open (see there). */
        f->passthrough_fd = safe_close(f->passthrough_fd);

        /* Requests the dead daemon had read but not answered would wait forever: have the kernel
         * send them again. Without FUSE_NOTIFY_RESEND (Linux < 6.9) they stay unanswered. */
        if (write(fuse_fd, &resend, sizeof(resend)) < 0)
                log_file_warning_errno(f, errno, "the kernel cannot resend requests in flight "
                                       "(FUSE_NOTIFY_RESEND needs Linux 6.9): %m; reads that were in flight "
                                       "when the earlier daemon died stay unanswered");
        return 0;
}

int fuse_file_get_fd(const FuseFile *f) {
        return fuse_session_fd(f->session);
}

void fuse_file_get_init(const FuseFile *f, const uint8_t **ret, size_t *ret_size) {
        *ret = f->init;
        *ret_size = f->init_size;
}

int fuse_file_mount(FuseFile *f) {
        _cleanup_(closep) int fd = -EBADF;
        _cleanup_(freep) char *fsname = NULL;
        char opts[128];

        /* Runs on a worker. The daemon mounts rather than libfuse: libfuse would keep the mount
         * point as its own, to unmount it when the session ends, but a mapping can outlive its
         * session (the next daemon takes it over through the fd store). This way a session always
         * starts from an fd, fresh or taken over, and the daemon alone unmounts.
         *
         * No allow_other: only root opens the file (the loop device reads through the file we
         * opened). rootmode: the mount point is a regular file. */
        fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        (void) snprintf(opts, sizeof(opts), "fd=%i,rootmode=%o,user_id=0,group_id=0,default_permissions", fd,
                        (unsigned) S_IFREG);
        /* Names are restricted to [A-Za-z0-9._:@+-]: nothing to escape. */
        if (asprintf(&fsname, "fuseloop:%s", f->name) < 0)
                return -ENOMEM;
        if (mount(fsname, f->path, "fuse.fuseloop", MS_RDONLY | MS_NOSUID | MS_NODEV, opts) < 0)
                return -errno;

        return fuse_file_adopt(f, TAKE_FD(fd));
}

/* Keeps a copy of the kernel's FUSE_INIT request (the first request of every connection), for
 * the restart record. */
static void fuse_file_keep_init(FuseFile *f) {
        struct fuse_in_header h;

        if (f->buf.size < sizeof(h) || (f->buf.flags & FUSE_BUF_IS_FD))
                return;
        memcpy(&h, f->buf.mem, sizeof(h));
        if (h.opcode != FUSE_INIT || h.len > f->buf.size || h.len > FUSE_FILE_INIT_MAX)
                return;
        f->init = memdup(f->buf.mem, h.len);
        if (f->init)
                f->init_size = h.len;
}

/* The opcode of the request in f->buf, or 0 (no request of ours) if it is not in memory. */
static uint32_t fuse_file_opcode(const FuseFile *f) {
        struct fuse_in_header h;

        if (f->buf.size < sizeof(h) || (f->buf.flags & FUSE_BUF_IS_FD))
                return 0;
        memcpy(&h, f->buf.mem, sizeof(h));
        return h.opcode;
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
                        log_file_debug_errno(f, r, "FUSE session ended: %m");
                        /* Reads taken in this batch still go out, so that they complete and the
                         * session can drain. */
                        source_flush(f->source);
                        fuse_file_stop(f);
                        if (f->gone)
                                f->gone(f, f->gone_userdata);
                        return 0;
                }

                /* Only until libfuse has seen INIT: nothing for the read path. */
                if (!f->initialized) {
                        fuse_file_keep_init(f);
                        if (f->passthrough_fd >= 0 && fuse_file_answer_init(f))
                                continue;
                } else if (f->backing_id > 0 && fuse_file_opcode(f) == FUSE_OPEN && fuse_file_answer_open(f))
                        continue;
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


FuseFile *fuse_file_free(FuseFile *f) {
        if (!f)
                return NULL;

        assert(f->n_in_flight == 0);
        f->timer = sd_event_source_disable_unref(f->timer);
        fuse_file_stop(f);
        if (f->session)
                fuse_session_destroy(f->session);
        (void) safe_close(f->passthrough_fd);
        free(f->buf.mem);
        free(f->init);
        free(f->path);
        free(f->name);
        free(f);
        return NULL;
}

void fuse_file_set_device(FuseFile *f, const char *device) {
        (void) snprintf(f->device, sizeof(f->device), "%s", device ?: "");
}

const FuseFileStats *fuse_file_get_stats(const FuseFile *f) {
        return &f->stats;
}

int fuse_file_set_timeout(FuseFile *f, sd_event *e, uint64_t timeout_usec, FuseFileStalled stalled,
                          void *userdata) {
        int r;

        assert(f->n_in_flight == 0);

        if (!f->timer) {
                r = sd_event_add_time(e, &f->timer, CLOCK_MONOTONIC, 0, DEADLINE_ACCURACY_USEC, on_read_timer,
                                      f);
                if (r < 0)
                        return r;
                (void) sd_event_source_set_description(f->timer, "fuse-read-timer");
                r = sd_event_source_set_enabled(f->timer, SD_EVENT_OFF);
                if (r < 0) {
                        f->timer = sd_event_source_disable_unref(f->timer);
                        return r;
                }
        }

        f->timeout_usec = timeout_usec;
        /* Stalled: the oldest read waited FUSE_FILE_STALL_USEC, or the timeout if that is shorter,
         * since a read that outlives the timeout has failed by definition. */
        f->stall_usec = timeout_usec > 0 ? MIN(timeout_usec, FUSE_FILE_STALL_USEC) : FUSE_FILE_STALL_USEC;
        f->on_stalled = stalled;
        f->stalled_userdata = userdata;
        return 0;
}

bool fuse_file_is_stalled(const FuseFile *f) {
        return f->stalled;
}
