/* Sources backed by a file descriptor (regular file or block device), read through io_uring.
 *
 * io_uring rather than a thread pool: a read that blocks (a slow disk, a hung network file
 * system) waits in the kernel's own io-wq workers, so it can never occupy a thread that another
 * mapping needs, and page-cache hits complete inline without any thread hand-off at all. One ring
 * serves every fd source; its completions wake the event loop through an eventfd. */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "source-fd.h"

#if HAVE_VALGRIND_MEMCHECK_H
#include <valgrind/memcheck.h>
#else
#define VALGRIND_MAKE_MEM_DEFINED(addr, len) ((void) (addr), (void) (len))
#endif

#define IO_RING_ENTRIES 256

typedef struct FdRead FdRead;

struct IoRing {
        struct io_uring ring;
        bool ring_initialized;
        int efd;
        sd_event_source *efd_source;
        unsigned n_in_flight;
        bool need_submit;
        /* Reads that found no free submission entry, oldest first. */
        FdRead *queue_head, *queue_tail;
};

typedef struct SourceFd {
        Source source;
        IoRing *ring;
        int fd;
        bool force_async;
        bool no_read_now;
} SourceFd;

struct FdRead {
        SourceFd *source;
        uint8_t *buf;
        size_t len, done_len;
        uint64_t offset;
        SourceReadDone done;
        void *userdata;
        FdRead *next;
};

static bool io_ring_prep(IoRing *ring, FdRead *rd) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&ring->ring);

        if (!sqe)
                return false;
        io_uring_prep_read(sqe, rd->source->fd, rd->buf + rd->done_len,
                           (unsigned) (rd->len - rd->done_len), rd->offset + rd->done_len);
        io_uring_sqe_set_data(sqe, rd);
        /* Block devices read inline may wait in the block layer (a frozen queue, no free tags);
         * the source may even be one of our own loop devices, whose I/O needs this very thread.
         * Regular files try the page cache inline without blocking and go to io-wq otherwise
         * (but files on FUSE: see source_fd_get_size()). */
        if (rd->source->force_async)
                io_uring_sqe_set_flags(sqe, IOSQE_ASYNC);
        ring->need_submit = true;
        return true;
}

static void io_ring_submit(IoRing *ring) {
        int r;

        if (!ring->need_submit)
                return;

        r = io_uring_submit(&ring->ring);
        if (r < 0)
                log_warning_errno(r, "Failed to submit reads to io_uring: %m, retrying on the next completion");
        else
                ring->need_submit = false;
}

static void fd_read_finish(IoRing *ring, FdRead *rd, int result) {
        ring->n_in_flight--;
        rd->done(result, rd->userdata);
        free(rd);
}

static void io_ring_drain_queue(IoRing *ring) {
        while (ring->queue_head) {
                FdRead *rd = ring->queue_head;

                if (!io_ring_prep(ring, rd))
                        break;
                ring->queue_head = rd->next;
                if (!ring->queue_head)
                        ring->queue_tail = NULL;
                rd->next = NULL;
        }
}

static void io_ring_enqueue(IoRing *ring, FdRead *rd) {
        if (!ring->queue_head && io_ring_prep(ring, rd))
                return;

        rd->next = NULL;
        if (ring->queue_tail)
                ring->queue_tail->next = rd;
        else
                ring->queue_head = rd;
        ring->queue_tail = rd;
}

static int on_ring_event(sd_event_source *s _unused_, int fd, uint32_t revents _unused_, void *userdata) {
        IoRing *ring = userdata;
        struct io_uring_cqe *cqe;
        eventfd_t v;

        (void) eventfd_read(fd, &v);

        while (io_uring_peek_cqe(&ring->ring, &cqe) == 0) {
                FdRead *rd = io_uring_cqe_get_data(cqe);
                int res = cqe->res;

                io_uring_cqe_seen(&ring->ring, cqe);

                if (res < 0)
                        fd_read_finish(ring, rd, res);
                else if (res == 0)
                        /* The source ended before the range we checked at map time: it shrank.
                         * A short reply would make FUSE take it for the end of the file and the
                         * kernel see zeros; this is an error of the source. */
                        fd_read_finish(ring, rd, -EIO);
                else {
                        /* The kernel wrote these bytes, which memcheck does not see. */
                        (void) VALGRIND_MAKE_MEM_DEFINED(rd->buf + rd->done_len, (size_t) res);
                        rd->done_len += (size_t) res;
                        if (rd->done_len >= rd->len)
                                fd_read_finish(ring, rd, (int) rd->done_len);
                        else
                                io_ring_enqueue(ring, rd);  /* short read: ask for the rest */
                }
        }

        io_ring_drain_queue(ring);
        io_ring_submit(ring);
        return 0;
}

int io_ring_new(sd_event *e, IoRing **ret) {
        IoRing *ring;
        int r;

        ring = calloc(1, sizeof(*ring));
        if (!ring)
                return -ENOMEM;
        ring->efd = -EBADF;

        r = io_uring_queue_init(IO_RING_ENTRIES, &ring->ring, 0);
        if (r < 0)
                goto fail;
        ring->ring_initialized = true;

        ring->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (ring->efd < 0) {
                r = -errno;
                goto fail;
        }

        r = io_uring_register_eventfd(&ring->ring, ring->efd);
        if (r < 0)
                goto fail;

        r = sd_event_add_io(e, &ring->efd_source, ring->efd, EPOLLIN, on_ring_event, ring);
        if (r < 0)
                goto fail;
        (void) sd_event_source_set_description(ring->efd_source, "io-uring");

        *ret = ring;
        return 0;

fail:
        io_ring_free(ring);
        return r;
}

IoRing *io_ring_free(IoRing *ring) {
        if (!ring)
                return NULL;

        sd_event_source_disable_unref(ring->efd_source);
        if (ring->ring_initialized)
                io_uring_queue_exit(&ring->ring);
        (void) safe_close(ring->efd);
        free(ring);
        return NULL;
}

static int source_fd_read(Source *s, void *buf, size_t len, uint64_t offset, SourceReadDone done,
                          void *userdata) {
        SourceFd *sf = (SourceFd *) s;
        FdRead *rd;

        rd = malloc(sizeof(*rd));
        if (!rd)
                return -ENOMEM;
        *rd = (FdRead) {
                .source = sf,
                .buf = buf,
                .len = len,
                .offset = offset,
                .done = done,
                .userdata = userdata,
        };

        sf->ring->n_in_flight++;
        io_ring_enqueue(sf->ring, rd);
        return 0;
}

/* What io_uring would do inline, without its round trip through the ring and the eventfd:
 * RWF_NOWAIT reads only what is in the page cache and never waits for the device. Not for
 * sources that io_uring must read on its workers (block devices, files on FUSE). */
static uint64_t monotonic_nsec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);  /* the vDSO's: no system call */
        return (uint64_t) ts.tv_sec * 1000000000ULL + (uint64_t) ts.tv_nsec;
}

static bool source_fd_read_now(Source *s, void *buf, size_t len, uint64_t offset, uint64_t *ret_usec) {
        SourceFd *sf = (SourceFd *) s;
        struct iovec iov = { .iov_base = buf, .iov_len = len };
        uint64_t start_ns;
        ssize_t n;

        if (sf->force_async || sf->no_read_now || offset > (uint64_t) INT64_MAX)
                return false;
        start_ns = monotonic_nsec();
        n = preadv2(sf->fd, &iov, 1, (off_t) offset, RWF_NOWAIT);
        if (n < 0 && errno == EOPNOTSUPP)
                sf->no_read_now = true;  /* the file system cannot tell: ask io_uring from now on */
        if (n < 0 || (size_t) n != len)
                return false;
        *ret_usec = (monotonic_nsec() - start_ns + 999) / 1000;
        return true;
}

static void source_fd_flush(Source *s) {
        io_ring_submit(((SourceFd *) s)->ring);
}

static void source_fd_free(Source *s) {
        SourceFd *sf = (SourceFd *) s;

        (void) safe_close(sf->fd);
        free(sf);
}

static const SourceVTable source_fd_vtable = {
        .read = source_fd_read,
        .read_now = source_fd_read_now,
        .flush = source_fd_flush,
        .free = source_fd_free,
};

int source_fd_check(int fd, bool check_access, char *errbuf, size_t errlen) {
        struct stat st;
        int flags;

        if (check_access) {
                flags = fcntl(fd, F_GETFL);
                if (flags < 0) {
                        (void) snprintf(errbuf, errlen, "the source is not a valid file descriptor");
                        return -errno;
                }
                if (flags & O_PATH) {
                        (void) snprintf(errbuf, errlen, "the source was opened with O_PATH and cannot be read");
                        return -EBADF;
                }
                if ((flags & O_ACCMODE) == O_WRONLY) {
                        (void) snprintf(errbuf, errlen, "the source is open for writing only; open it for reading");
                        return -EBADF;
                }
        }

        if (fstat(fd, &st) < 0) {
                (void) snprintf(errbuf, errlen, "cannot stat the source: %s", strerror(errno));
                return -errno;
        }
        if (S_ISDIR(st.st_mode)) {
                (void) snprintf(errbuf, errlen, "the source is a directory, not a file or block device");
                return -EISDIR;
        }
        if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
                (void) snprintf(errbuf, errlen,
                                "the source is not a regular file or block device (pipes, sockets and character devices cannot be mapped)");
                return -EINVAL;
        }
        return 0;
}

/* Runs on a worker (a file of ours answers fstatfs() from the loop). */
static bool source_fd_is_on_fuse(int fd) {
        struct statfs sfs;

        return fstatfs(fd, &sfs) >= 0 && sfs.f_type == FUSE_SUPER_MAGIC;
}

int source_fd_get_size(int fd, uint64_t *ret_size, bool *ret_read_async, bool *ret_on_fuse, char *errbuf,
                       size_t errlen) {
        struct stat st;
        uint64_t size;

        if (fstat(fd, &st) < 0) {
                (void) snprintf(errbuf, errlen, "cannot stat the source: %s", strerror(errno));
                return -errno;
        }

        if (S_ISBLK(st.st_mode)) {
                if (ioctl(fd, BLKGETSIZE64, &size) < 0) {
                        (void) snprintf(errbuf, errlen, "cannot get the size of the block device: %s",
                                        strerror(errno));
                        return -errno;
                }
        } else
                size = (uint64_t) st.st_size;

        if (size == 0) {
                (void) snprintf(errbuf, errlen, "the source is empty");
                return -EINVAL;
        }

        *ret_size = size;
        /* An inline read first asks the file whether it would block: on FUSE that is a POLL
         * request to the file system's server, and the loop thread would wait for it. That server
         * may be slow, hung, or this very daemon (a mapping's own file mapped again). */
        *ret_on_fuse = source_fd_is_on_fuse(fd);
        *ret_read_async = S_ISBLK(st.st_mode) || *ret_on_fuse;
        return 0;
}

int source_fd_new(IoRing *ring, int fd, uint64_t size, bool read_async, const char *description, Source **ret) {
        SourceFd *sf;

        sf = calloc(1, sizeof(*sf));
        if (!sf)
                return -ENOMEM;

        sf->source.description = strdup(description);
        if (!sf->source.description) {
                free(sf);
                return -ENOMEM;
        }
        sf->source.vtable = &source_fd_vtable;
        sf->source.size = size;
        sf->ring = ring;
        sf->fd = fd;
        sf->force_async = read_async;

        *ret = &sf->source;
        return 0;
}

int source_fd_get_fd(const Source *s) {
        return s && s->vtable == &source_fd_vtable ? ((const SourceFd *) s)->fd : -EBADF;
}
