/* The service manager's file descriptor store, through which mappings outlive the daemon process.
 *
 * Each active mapping keeps three fds there, named "fuseloop-<diskseq>-<kind>" after the disk
 * sequence number of its loop device attachment (unique until reboot; mapping names may contain
 * ':', which fd names may not): its /dev/fuse connection ("fuse"), its source ("source") and its
 * restart record in a sealed memfd ("record"). A restarted daemon gets them back through
 * $LISTEN_FDS/$LISTEN_FDNAMES (sd_listen_fds_with_names()) and resumes serving. Without a service
 * manager ($NOTIFY_SOCKET unset) every call here does nothing. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "restart-record.h"

typedef enum FdStoreKind {
        FD_STORE_FUSE,
        FD_STORE_SOURCE,
        FD_STORE_RECORD,
        _FD_STORE_KIND_MAX,
} FdStoreKind;

/* "fuse", "source", "record": also the last part of the fd names. */
const char *fd_store_kind_to_string(FdStoreKind k);

/* Whether a service manager listens: fds sent are kept (if its unit allows an fd store). */
bool fd_store_available(void);

/* Sends a mapping's fds and its record (written into a sealed memfd here) to the store. On
 * failure nothing of the mapping stays stored. Returns 0, 1 if there is no service manager
 * (nothing sent), or -errno. */
int fd_store_put_mapping(uint64_t diskseq, int fuse_fd, int source_fd, const RestartRecord *record);

/* Removes a mapping's fds from the store (FDSTOREREMOVE=1). */
void fd_store_remove_mapping(uint64_t diskseq);

/* A mapping's fds as handed back at start-up: any of them may be missing (-EBADF). */
typedef struct StoredMapping {
        uint64_t diskseq;
        int fds[_FD_STORE_KIND_MAX];
} StoredMapping;

/* Takes the fds passed by the service manager (and unsets $LISTEN_*), grouped by mapping; marks
 * them close-on-exec. fds with names not of ours are closed and logged. Returns the number of
 * mappings (>= 0) and a malloc()ed array in *ret, or -errno. */
int fd_store_take(StoredMapping **ret);

/* Closes the fds of s. */
void stored_mapping_close(StoredMapping *s);

/* Reads a record memfd (from its start, at most RESTART_RECORD_MAX bytes). */
int fd_store_read_record(int fd, char **ret_text, size_t *ret_len);
