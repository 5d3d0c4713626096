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

/* Runs on a worker: writes the size of the source (refusing an empty one) and whether it is a
 * block device. */
int source_fd_get_size(int fd, uint64_t *ret_size, bool *ret_is_block, char *errbuf, size_t errlen);

/* Creates a source reading fd (taken over on success) through ring; reads of block devices always
 * go to io_uring's workers. description is copied. */
int source_fd_new(IoRing *ring, int fd, uint64_t size, bool is_block, const char *description, Source **ret);
