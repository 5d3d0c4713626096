/* One mapping's lifecycle: source, FUSE file and loop device, from Map to removal. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "fd-store.h"
#include "fuse-file.h"
#include "log.h"
#include "loop-device.h"
#include "manager.h"
#include "options.h"
#include "source.h"
#include "source-nbd.h"
#include "util.h"

typedef enum MappingState {
        MAPPING_ATTACHING,
        MAPPING_ACTIVE,
        MAPPING_DETACHING,
        MAPPING_FAILED,
        _MAPPING_STATE_MAX,
        _MAPPING_STATE_INVALID = -EINVAL,
} MappingState;

const char *mapping_state_to_string(MappingState s);

/* Where the attach sequence is; also tells which udev events we wait for. */
typedef enum MappingStep {
        STEP_NONE,
        STEP_OPEN_SOURCE,
        STEP_CONNECT,
        STEP_MOUNT,
        STEP_ATTACH,
        STEP_WAIT_DISK,
        STEP_PARTSCAN,
        STEP_WAIT_PARTITIONS,
        STEP_DETACH,
        STEP_WAIT_RELEASE,
        STEP_WAIT_REMOVED,
        STEP_CANCEL_AUTOCLEAR,
        STEP_DRAIN,
        STEP_UNMOUNT,
} MappingStep;

struct Mapping {
        Manager *manager;
        Mapping *next, *prev;
        unsigned n_ref;

        char *name;
        char *path;              /* the FUSE file, <run-dir>/<name> */
        char *object_path;
        char *uri_path;          /* MapURI: the path the daemon opens */
        MapOptions options;
        uid_t owner_uid;
        uint64_t created_usec;
        bool direct_io_effective;

        MappingState state;
        MappingStep step;
        bool published;          /* object visible on the bus, MappingAdded sent */
        bool stored;             /* its fds are in the service manager's fd store */
        bool job_running;

        Source *source;
        char *source_description;
        bool source_read_async;  /* see source_fd_new() */
        bool source_on_fuse;     /* the source is a file on FUSE */
        FuseFile *fuse;
        LoopDevice loop;
        bool loop_attached;
        uint64_t cache_sectors_base;  /* a resumed mapping's read sectors when it was resumed */
        /* The part of the source the FUSE file shows: the mapping's extent, or for passthrough
         * (offsets map 1:1) the whole source, with the extent in lo_offset and lo_sizelimit. */
        uint64_t fuse_offset, fuse_size;

        /* Written only by the running job (workers), read by its done callback. */
        struct {
                int source_fd;
                SourceNbd *nbd;          /* an NBD source, connecting until on the loop */
                uint64_t source_size;
                bool source_read_async;
                bool source_on_fuse;
                char *source_description;
                Source *source;          /* handed to the unmount job to close */
                bool run_file_created;   /* the mount job made <run-dir>/<name> */
                char error[256];
                LoopDevice loop;
                uint64_t seqnum;
        } job;

        /* udev wait */
        uint64_t wait_seqnum;
        LoopPartition *wait_parts;
        int n_wait_parts;
        sd_event_source *timer;

        /* Calls answered when the current operation ends. */
        sd_bus_message *map_call;
        sd_bus_message *unmap_call;
        bool lazy;
        const char *remove_reason;
        char *error_name;
        char *error_message;

        /* bind-to-caller */
        char *caller;
        sd_bus_slot *caller_slot;
        bool caller_gone;
};

/* Creates a mapping in state attaching and adds it to the manager (which reserves the name).
 * Exactly one of fd (taken over) and uri_path is set. Options are taken over. */
int mapping_new(Manager *manager, const char *name, int fd, const char *uri_path, MapOptions *options,
                uid_t owner, Mapping **ret);

/* At start-up, before the bus: resumes serving a mapping of an earlier daemon from its stored
 * fds (the FUSE and source fds are taken from s on success). The mapping is active but not yet
 * on the bus (mapping_publish_resumed()). On failure the reason is logged and nothing of the
 * mapping remains here; its loop device and run file are left to the start-up clean-up. */
int mapping_resume(Manager *manager, StoredMapping *s);

/* Once the bus is there: puts a resumed mapping on the bus and follows its caller again. */
void mapping_publish_resumed(Mapping *m);

/* Whether the mapping can be left to the next instance at a restart: it is in the fd store and
 * settled (active, or waiting for its last user after a lazy unmap). */
bool mapping_can_hand_over(const Mapping *m);

/* Restart: stops serving (requests already taken are answered first), then forgets the mapping
 * without touching the kernel; its fds stay in the fd store. */
void mapping_hand_over(Mapping *m);

/* Starts the attach sequence; call (a Map or MapURI call) is answered when it succeeds or fails. */
void mapping_start(Mapping *m, sd_bus_message *call, const char *caller);

/* Unmaps; call (may be NULL) is answered when done or refused. Returns 0, or -EBUSY when the
 * mapping is in a state that cannot be unmapped now (error already sent). */
void mapping_unmap(Mapping *m, bool lazy, sd_bus_message *call, const char *reason);

/* Handles a block device event (from the udev monitor). */
void mapping_on_block_event(Mapping *m, const char *action, dev_t devnum, uint64_t seqnum);

/* Takes the mapping down at daemon shutdown: detached if unused, lazily otherwise. */
void mapping_shutdown(Mapping *m);

/* The caller of a bind-to-caller mapping disconnected. */
void mapping_caller_gone(Mapping *m);

/* The bus came back: re-install per-mapping bus state. */
void mapping_bus_reconnected(Mapping *m);

Mapping *mapping_ref(Mapping *m);
Mapping *mapping_unref(Mapping *m);

/* The device path, "" while none is attached. */
const char *mapping_device(const Mapping *m, char *buf, size_t len);

const FuseFileStats *mapping_stats(const Mapping *m);

/* Who reads the source for the loop device: "passthrough" (the kernel, from the FUSE file's
 * backing file) or "daemon" (fuseloopd, through the FUSE session). */
const char *mapping_read_path(const Mapping *m);

/* The share (0..1) of the bytes the loop device read from its backing file that the kernel's
 * page cache of the FUSE file answered without asking us; -1 when that means nothing: direct I/O
 * bypasses that cache, or nothing was read yet. Reads sysfs, never the FUSE file. */
double mapping_cache_hit_ratio(const Mapping *m);

/* The kernel's counters of the mapping's loop device (/sys/block/loopN/stat) for this attachment
 * only: reads and read sectors since LOOP_CONFIGURE, and the requests in flight. Reads sysfs,
 * never the FUSE file. Returns 0, or -ENODEV (no device) or another -errno. */
int mapping_kernel_stat(const Mapping *m, BlockStat *ret);

/* Messages about a mapping: "Mapping '<name>': ..." and, in the journal, MAPPING= and DEVICE=. */
#define log_mapping_full_errno(m, level, error, fmt, ...)                                        \
        ({                                                                                      \
                const Mapping *_m = (m);                                                        \
                char _dev[32];                                                                  \
                log_object_full_errno((level), (error), _m->name, mapping_device(_m, _dev, sizeof(_dev)), \
                                      "Mapping '%s': " fmt, _m->name, ##__VA_ARGS__);           \
        })
#define log_mapping_debug(m, ...)   (void) log_mapping_full_errno(m, LOG_DEBUG, 0, __VA_ARGS__)
#define log_mapping_info(m, ...)    (void) log_mapping_full_errno(m, LOG_INFO, 0, __VA_ARGS__)
#define log_mapping_notice(m, ...)  (void) log_mapping_full_errno(m, LOG_NOTICE, 0, __VA_ARGS__)
#define log_mapping_warning(m, ...) (void) log_mapping_full_errno(m, LOG_WARNING, 0, __VA_ARGS__)
#define log_mapping_error(m, ...)   (void) log_mapping_full_errno(m, LOG_ERR, 0, __VA_ARGS__)
#define log_mapping_debug_errno(m, e, ...)   log_mapping_full_errno(m, LOG_DEBUG, e, __VA_ARGS__)
#define log_mapping_info_errno(m, e, ...)    log_mapping_full_errno(m, LOG_INFO, e, __VA_ARGS__)
#define log_mapping_warning_errno(m, e, ...) log_mapping_full_errno(m, LOG_WARNING, e, __VA_ARGS__)
#define log_mapping_error_errno(m, e, ...)   log_mapping_full_errno(m, LOG_ERR, e, __VA_ARGS__)

/* The same for a mapping known only by its name and device (NULL or "" when none): before its
 * Mapping exists, or where the message is not "Mapping '<name>': ..." but "Mapping '<name>' " fmt
 * ("... cannot be resumed: ..."). Returns -abs(error), like log_full_errno(). */
#define log_mapping_name_full_errno(name, device, level, error, fmt, ...)                        \
        ({                                                                                      \
                const char *_n = (name);                                                        \
                log_object_full_errno((level), (error), _n, (device), "Mapping '%s' " fmt, _n,    \
                                      ##__VA_ARGS__);                                           \
        })

/* Emits PropertiesChanged for State (published mappings only). */
void mapping_emit_state(Mapping *m);
