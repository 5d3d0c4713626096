/* Sources backed by a file descriptor (regular file or block device), read through io_uring. */
#pragma once

#include <stdbool.h>
#include <systemd/sd-event.h>

#include "source.h"

typedef struct IoRing IoRing;

/* Creates the io_uring shared by all fd sources, completions dispatched on the event loop. */
int io_ring_new(sd_event *e, IoRing **ret);

/* Frees the ring; no read may be in flight. */
IoRing *io_ring_free(IoRing *ring);

/* Runs on a worker (fstat of a file of ours needs the loop): checks that fd can be a source, a
 * regular file or a block device, and with check_access that it is open for reading. On failure
 * returns -errno and writes a readable reason to errbuf. */
int source_fd_check(int fd, bool check_access, char *errbuf, size_t errlen);

/* Runs on a worker: writes the size of the source (refusing an empty one), whether its reads
 * must always go to io_uring's workers (see source_fd_new()) and whether it is a file on FUSE. */
int source_fd_get_size(int fd, uint64_t *ret_size, bool *ret_read_async, bool *ret_on_fuse, char *errbuf,
                       size_t errlen);

/* Creates a source reading fd (taken over on success) through ring. With read_async (block
 * devices, files on FUSE) reads always go to io_uring's workers, never inline on the loop thread.
 * description is copied. */
int source_fd_new(IoRing *ring, int fd, uint64_t size, bool read_async, const char *description, Source **ret);

/* The fd an fd source reads (for the fd store), or -EBADF for another kind of source. */
int source_fd_get_fd(const Source *s);
