/* One mapping's FUSE session: a single read-only regular file, served from the event loop. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "source.h"

typedef struct FuseFile FuseFile;

/* Called on the loop thread when the kernel side of the session is gone (unmounted or aborted
 * behind our back). */
typedef void (*FuseFileGone)(FuseFile *f, void *userdata);

typedef struct FuseFileStats {
        uint64_t bytes_read;
        uint64_t read_requests;
        uint64_t read_errors;
} FuseFileStats;

/* Creates the session for a file of `size` bytes that reads source from `offset` on. The source
 * is borrowed and must outlive the FuseFile. path is the regular file to mount on. */
int fuse_file_new(const char *name, const char *path, Source *source, uint64_t offset, uint64_t size,
                  FuseFile **ret);

/* Runs on a worker: mounts the session on its path. */
int fuse_file_mount(FuseFile *f);

/* Loop thread: starts serving the mounted session's fd on e. */
int fuse_file_start(FuseFile *f, sd_event *e, FuseFileGone gone, void *userdata);

/* Loop thread: stops taking requests. Requests in flight are still answered. */
void fuse_file_stop(FuseFile *f);

/* Loop thread: after fuse_file_stop(), drained(userdata) runs once the last request in flight is
 * answered. Returns false (and never calls drained) if nothing is in flight. */
bool fuse_file_drain(FuseFile *f, void (*drained)(void *userdata), void *userdata);

/* Requests received but not answered yet. */
unsigned fuse_file_n_in_flight(const FuseFile *f);

/* Runs on a worker: unmounts the session (lazily) and closes its fd. Call after fuse_file_stop()
 * with nothing in flight. */
void fuse_file_unmount(FuseFile *f);

/* Loop thread: frees the session. Nothing may be in flight. */
FuseFile *fuse_file_free(FuseFile *f);

const FuseFileStats *fuse_file_get_stats(const FuseFile *f);

/* Routes libfuse's own messages through our logger. */
void fuse_file_setup_logging(void);
