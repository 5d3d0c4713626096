/* One mapping's FUSE session: a single read-only regular file, served from the event loop. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "histogram.h"
#include "source.h"

typedef struct FuseFile FuseFile;

/* Called on the loop thread when the kernel side of the session is gone (unmounted or aborted
 * behind our back). */
typedef void (*FuseFileGone)(FuseFile *f, void *userdata);

/* Called on the loop thread when the session becomes stalled (its oldest read has waited for the
 * source longer than the stall threshold) and when it stops being stalled. Must not free f. */
typedef void (*FuseFileStalled)(FuseFile *f, bool stalled, void *userdata);

typedef struct FuseFileStats {
        uint64_t bytes_read;
        uint64_t read_requests;
        uint64_t read_errors;      /* reads answered with an error, timed out ones included */
        uint64_t timed_out_reads;  /* reads answered with EIO because they outlived the timeout */
        /* Microseconds from the loop iteration that took a read to the one that answered it, for
         * every read given to the source (answered with data or with an error). */
        Histogram read_latency_usec;
} FuseFileStats;

/* A session is stalled once its oldest read has waited this long for the source, or the timeout
 * if that is shorter. Healthy sources, even busy network file systems, answer far sooner; a few
 * seconds tell a stuck source from a slow one without crying wolf. */
#define FUSE_FILE_STALL_USEC (5ULL * 1000000ULL)

/* Creates the session for a file of `size` bytes that reads source from `offset` on. The source
 * is borrowed and must outlive the FuseFile. path is the regular file to mount on. */
int fuse_file_new(const char *name, const char *path, Source *source, uint64_t offset, uint64_t size,
                  FuseFile **ret);

/* Asks for FUSE passthrough (Linux 6.9, protocol 7.40): the kernel then reads backing_fd itself
 * and reads of the file never reach the daemon, nor FuseFileStats. Offsets pass through 1:1, so
 * the session must have been created with offset 0 and the size of backing_fd's data (the whole
 * source); a mapping's offset and size limit then belong to the loop device (lo_offset,
 * lo_sizelimit). backing_fd is duplicated; the kernel keeps its own reference to the file once
 * registered.
 *
 * For a fresh connection: call after fuse_file_new() and before fuse_file_start(), i.e. before the
 * session sees FUSE_INIT; the session then answers INIT itself (libfuse 3.14 cannot negotiate
 * passthrough) and registers the file. Whether the kernel takes it is known once INIT has been
 * answered (fuse_file_passthrough_active()); if it does not, reads are served by the daemon as
 * without this call. A resumed connection keeps what it negotiated: see
 * fuse_file_adopt_passthrough(). Returns 0, -EINVAL for a session with an offset, -EBUSY after
 * INIT, or -errno. */
int fuse_file_set_passthrough(FuseFile *f, int backing_fd);

/* Whether opens of the file are answered with passthrough: the kernel accepted it in FUSE_INIT
 * and the backing file is registered with the connection. A file keeps the path it was opened
 * with. */
bool fuse_file_passthrough_active(const FuseFile *f);

/* The connection's passthrough registration (the kernel's backing id), for the restart record:
 * > 0 while passthrough is active, else 0. It stays registered as long as the connection, also
 * after fuse_file_free(), so that the next daemon can take it over. */
int fuse_file_get_passthrough_id(const FuseFile *f);

/* Loop thread, after fuse_file_resume(): continues passthrough on a resumed connection with the
 * registration an earlier daemon made (backing_id from fuse_file_get_passthrough_id(), kept in the
 * restart record). A resumed connection whose record has no id stays on the read path, even with
 * fuse_file_set_passthrough(): the kernel fails every open that does not use the backing file the
 * files already open use. Returns 0, -EINVAL for an id <= 0, -EBUSY before the session is
 * initialised. */
int fuse_file_adopt_passthrough(FuseFile *f, int backing_id);

/* Runs on a worker: mounts a new FUSE connection on the session's path and hands its fd to the
 * session. Unmounting is the caller's job (a lazy umount2() of the path). */
int fuse_file_mount(FuseFile *f);

/* The largest FUSE_INIT request kept (header and struct fuse_init_in are far smaller). */
#define FUSE_FILE_INIT_MAX 256u

/* Loop thread, instead of fuse_file_mount(): adopts fuse_fd (an initialised connection that an
 * earlier daemon served; taken over even on failure), replays the kernel's FUSE_INIT request init
 * that it received to libfuse, and asks the kernel to send again the requests that were read but
 * never answered. Nothing here waits for the kernel or for a FUSE file. Passthrough resumes only
 * with fuse_file_adopt_passthrough(). Returns 0 or -errno. */
int fuse_file_resume(FuseFile *f, int fuse_fd, const uint8_t *init, size_t init_size);

/* The session's /dev/fuse fd, and the FUSE_INIT request it was initialised with (NULL before
 * INIT). */
int fuse_file_get_fd(const FuseFile *f);
void fuse_file_get_init(const FuseFile *f, const uint8_t **ret, size_t *ret_size);

/* Loop thread: starts serving the mounted session's fd on e. */
int fuse_file_start(FuseFile *f, sd_event *e, FuseFileGone gone, void *userdata);

/* Loop thread: stops taking requests. Requests in flight are still answered. */
void fuse_file_stop(FuseFile *f);

/* Loop thread: after fuse_file_stop(), drained(userdata) runs once the source has completed the
 * last read in flight. Returns false (and never calls drained) if nothing is in flight. A read
 * answered with EIO at its deadline is still in flight: the source writes into its buffer until it
 * completes it, and neither the source nor this session may be freed under it, so draining waits
 * for the source even when the kernel has every answer. */
bool fuse_file_drain(FuseFile *f, void (*drained)(void *userdata), void *userdata);

/* Reads the source has not completed yet, including those answered at their deadline. */
unsigned fuse_file_n_in_flight(const FuseFile *f);

/* Loop thread: frees the session. Nothing may be in flight. */
FuseFile *fuse_file_free(FuseFile *f);

const FuseFileStats *fuse_file_get_stats(const FuseFile *f);

/* The mapping's loop device ("/dev/loopN"), for the session's log messages. */
void fuse_file_set_device(FuseFile *f, const char *device);

/* Loop thread, before fuse_file_start(): watches the reads in flight with a timer on e. A read that
 * the source has not completed within timeout_usec (0: no limit) is answered with EIO and counted
 * in read_errors and timed_out_reads; stalled (may be NULL) runs when the session becomes stalled
 * or stops being (see FUSE_FILE_STALL_USEC). Without this call reads wait as long as the source
 * takes and nothing reports a stall. Returns 0 or -errno. */
int fuse_file_set_timeout(FuseFile *f, sd_event *e, uint64_t timeout_usec, FuseFileStalled stalled,
                          void *userdata);

/* Whether the oldest read in flight has waited longer than the stall threshold. */
bool fuse_file_is_stalled(const FuseFile *f);

/* Routes libfuse's own messages through our logger. */
void fuse_file_setup_logging(void);
