/* Sources backed by a file descriptor (regular file or block device), read through io_uring. */
#pragma once

#include <systemd/sd-event.h>

#include "source.h"

typedef struct IoRing IoRing;

/* Creates the io_uring shared by all fd sources, completions dispatched on the event loop. */
int io_ring_new(sd_event *e, IoRing **ret);

/* Frees the ring; no read may be in flight. */
IoRing *io_ring_free(IoRing *ring);

/* Checks that fd can be a source: readable, a regular file or block device, not empty. On
 * failure returns -errno and writes a readable reason to errbuf. On success writes the size. */
int source_fd_check(int fd, uint64_t *ret_size, char *errbuf, size_t errlen);

/* Creates a source reading fd (taken over on success) through ring. description is copied. */
int source_fd_new(IoRing *ring, int fd, uint64_t size, const char *description, Source **ret);
