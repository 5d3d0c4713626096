/* One mapping's lifecycle: source, FUSE file and loop device, from Map to removal.
 *
 * attaching: open source (worker) -> mount the FUSE file (worker) -> LOOP_CONFIGURE (worker) ->
 *            udev processed the disk -> partition scan (worker) -> udev processed the partitions
 * active:    serving; udev tells when the device is detached behind our back
 * detaching: LOOP_CLR_FD (worker) -> the kernel released the file (udev) -> udev processed the
 *            disk and removed its partitions -> drain requests -> unmount the FUSE file and remove
 *            the run file (worker) -> removed
 * failed:    the same teardown from wherever the mapping got to, then the error is reported.
 *
 * One job at a time runs per mapping. The job reads only fields that do not change while it runs
 * and writes only m->job; its done callback runs on the loop and takes the results over. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/openat2.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <systemd/sd-bus.h>
#include <time.h>
#include <unistd.h>

#include "bus-mapping.h"
#include "bus-names.h"
#include "log.h"
#include "macro.h"
#include "mapping.h"
#include "restart-record.h"
#include "run-dir.h"
#include "util.h"

/* How long udev may take to process a new disk or its partitions before Map fails. */
#define UDEV_TIMEOUT_USEC (60ULL * 1000000ULL)
/* How long a non-lazy Unmap waits for a passing opener (udev's probe, blkid) to close. */
#define RELEASE_TIMEOUT_USEC (5ULL * 1000000ULL)
/* How often a lazy detach looks at sysfs itself, should a udev event get lost. */
#define RELEASE_RECHECK_USEC (5ULL * 1000000ULL)
/* How long an NBD server may take to connect and finish the handshake (unless the timeout option
 * is shorter). */
#define NBD_CONNECT_TIMEOUT_USEC (30ULL * 1000000ULL)
/* How long teardown waits for udev to drop a released device's links before it goes on. */
#define UDEV_REMOVE_TIMEOUT_USEC (10ULL * 1000000ULL)

static const char *const mapping_state_table[_MAPPING_STATE_MAX] = {
        [MAPPING_ATTACHING] = "attaching",
        [MAPPING_ACTIVE] = "active",
        [MAPPING_DETACHING] = "detaching",
        [MAPPING_FAILED] = "failed",
};

const char *mapping_state_to_string(MappingState s) {
        return s >= 0 && s < _MAPPING_STATE_MAX ? mapping_state_table[s] : NULL;
}

static void mapping_teardown(Mapping *m);
static void mapping_fail(Mapping *m, const char *error_name, const char *fmt, ...) _printf_(3, 4);

const char *mapping_device(const Mapping *m, char *buf, size_t len) {
        if (!m->loop_attached && m->loop.nr < 0)
                return "";
        (void) snprintf(buf, len, "/dev/loop%i", m->loop.nr);
        return buf;
}

const FuseFileStats *mapping_stats(const Mapping *m) {
        static const FuseFileStats none = {};

        return m->fuse ? fuse_file_get_stats(m->fuse) : &none;
}

int mapping_kernel_stat(const Mapping *m, BlockStat *ret) {
        BlockStat bs;
        int r;

        if (!m->loop_attached)
                return -ENODEV;
        r = block_stat_read_loop(m->loop.nr, &bs);
        if (r < 0)
                return r;

        /* The bases were read before LOOP_CONFIGURE: the counters only grow from there. */
        *ret = (BlockStat) {
                .read_ios = bs.read_ios >= m->loop.read_ios_base ? bs.read_ios - m->loop.read_ios_base : 0,
                .read_sectors = bs.read_sectors >= m->loop.read_sectors_base ?
                                bs.read_sectors - m->loop.read_sectors_base : 0,
                .in_flight = bs.in_flight,
        };
        return 0;
}

const char *mapping_read_path(const Mapping *m) {
        return m->fuse && fuse_file_passthrough_active(m->fuse) ? "passthrough" : "daemon";
}

double mapping_cache_hit_ratio(const Mapping *m) {
        const FuseFileStats *st = mapping_stats(m);
        uint64_t kernel_bytes, served, base;
        BlockStat bs;

        /* Counted from the attachment, or for a resumed mapping from the resumption, when our
         * own counters started again. */
        base = MAX(m->loop.read_sectors_base, m->cache_sectors_base);
        /* Passthrough reads never reach us: nothing to compare with. */
        if (m->direct_io_effective || !m->loop_attached || (m->fuse && fuse_file_passthrough_active(m->fuse)) ||
            block_stat_read_loop(m->loop.nr, &bs) < 0 ||
            bs.read_sectors <= base)
                return -1;

        kernel_bytes = (bs.read_sectors - base) * 512;
        served = st->bytes_read;
        /* Readahead may fetch more from us than the loop device asked for: no hits then. */
        if (served >= kernel_bytes)
                return 0;
        return 1.0 - (double) served / (double) kernel_bytes;
}

static void mapping_set_state(Mapping *m, MappingState s) {
        if (m->state == s)
                return;
        m->state = s;
        mapping_emit_state(m);
        manager_update_status(m->manager);
}

static Mapping *mapping_free(Mapping *m) {
        sd_event_source_disable_unref(m->timer);
        sd_bus_slot_unref(m->caller_slot);
        sd_bus_message_unref(m->map_call);
        sd_bus_message_unref(m->unmap_call);
        fuse_file_free(m->fuse);
        source_free(m->source);
        (void) safe_close(m->job.source_fd);
        free(m->job.source_description);
        source_free(m->job.source);
        source_nbd_free(m->job.nbd);
        free(m->source_description);
        map_options_done(&m->options);
        free(m->wait_parts);
        free(m->caller);
        free(m->error_name);
        free(m->error_message);
        free(m->uri_path);
        free(m->object_path);
        free(m->path);
        free(m->name);
        free(m);
        return NULL;
}

Mapping *mapping_ref(Mapping *m) {
        m->n_ref++;
        return m;
}

Mapping *mapping_unref(Mapping *m) {
        if (!m)
                return NULL;
        if (--m->n_ref > 0)
                return NULL;
        return mapping_free(m);
}

int mapping_new(Manager *manager, const char *name, int fd, const char *uri_path, MapOptions *options,
                uid_t owner, Mapping **ret) {
        struct timespec ts;
        Mapping *m;
        int r;

        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;

        *m = (Mapping) {
                .manager = manager,
                .n_ref = 1,
                .owner_uid = owner,
                .state = MAPPING_ATTACHING,
                .loop = LOOP_DEVICE_NULL,
                .job.source_fd = -EBADF,
                .options = MAP_OPTIONS_INIT,
        };

        m->name = strdup(name);
        if (!m->name || asprintf(&m->path, "%s/%s", manager->run_dir, name) < 0) {
                m->path = NULL;
                r = -ENOMEM;
                goto fail;
        }
        if (uri_path) {
                m->uri_path = strdup(uri_path);
                if (!m->uri_path) {
                        r = -ENOMEM;
                        goto fail;
                }
        }
        r = sd_bus_path_encode(FUSELOOP_MAPPING_PATH_PREFIX, name, &m->object_path);
        if (r < 0)
                goto fail;

        (void) clock_gettime(CLOCK_REALTIME, &ts);
        m->created_usec = (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000ULL;

        /* Take the options and the fd only once nothing can fail any more. */
        m->options = *options;
        *options = MAP_OPTIONS_INIT;
        m->job.source_fd = fd;

        manager_add_mapping(manager, m);
        *ret = m;
        return 0;

fail:
        mapping_free(m);
        return r;
}

/* ------------------------------------------------------------------------------------------ */
/* Jobs */

static void mapping_run_job(Mapping *m, MappingStep step, JobFunc func, JobDone done) {
        int r;

        m->step = step;
        m->job_running = true;
        mapping_ref(m);

        r = worker_run(m->manager->worker, func, done, m);
        if (r < 0) {
                m->job_running = false;
                log_mapping_error_errno(m, r, "failed to start a worker: %m");
                /* Report through the regular path so that the mapping is torn down. */
                done(r, m);
        }
}

/* Starts a job's done callback: the mapping may run its next job from here on. Returns true if
 * the mapping failed while the job ran; the caller then only takes over what the job made and
 * continues the teardown. */
static bool mapping_job_returned(Mapping *m) {
        m->job_running = false;
        return m->state == MAPPING_FAILED;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata);

static void mapping_arm_timer(Mapping *m, uint64_t usec) {
        int r;

        m->timer = sd_event_source_disable_unref(m->timer);
        r = sd_event_add_time_relative(m->manager->event, &m->timer, CLOCK_MONOTONIC, usec, 0, on_timer, m);
        if (r < 0)
                log_mapping_warning_errno(m, r, "failed to arm a timer: %m, ignoring");
}

static void mapping_disarm_timer(Mapping *m) {
        m->timer = sd_event_source_disable_unref(m->timer);
}

/* ------------------------------------------------------------------------------------------ */
/* Attach */

static void mapping_activate(Mapping *m);
static void mapping_check_partitions(Mapping *m);

/* NBD: the protocol option for an fd, the scheme for an URI (uri_path holds it then). */
static bool mapping_is_nbd(const Mapping *m) {
        return streq_ptr(m->options.protocol, "nbd") || (m->uri_path && nbd_uri_is_nbd(m->uri_path));
}

static int job_open_source(void *userdata) {
        Mapping *m = userdata;
        char link[64], target[PATH_MAX];
        ssize_t n;
        int fd, r;

        if (mapping_is_nbd(m)) {
                /* Only starts connecting; the handshake runs on the loop. */
                r = source_nbd_new(m->uri_path, m->job.source_fd, m->options.export_name, &m->job.nbd, m->job.error,
                                   sizeof(m->job.error));
                if (r >= 0 && !m->uri_path)
                        m->job.source_fd = -EBADF;  /* libnbd's now */
                return r;
        }

        /* Runs on a worker: the source may be a file of our own (open, fstat and the size check
         * can then need an answer from the loop thread). A path is looked at through O_PATH
         * first: opening a FIFO would hang and opening some devices has side effects. */
        if (m->uri_path) {
                /* For a caller other than root, polkit allowed exactly this path (rules see it as
                 * the "path" detail): follow no symbolic link, or one the caller planted would
                 * lead elsewhere. Paths never contain "." or ".." (checked by MapURI). */
                struct open_how how = {
                        .flags = O_PATH | O_CLOEXEC,
                        .resolve = m->owner_uid != 0 ? RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS : 0,
                };

                m->job.source_fd = (int) syscall(SYS_openat2, AT_FDCWD, m->uri_path, &how, sizeof(how));
                if (m->job.source_fd < 0) {
                        r = -errno;
                        if (r == -ELOOP && how.resolve != 0)
                                (void) snprintf(m->job.error, sizeof(m->job.error),
                                                "'%s' leads through a symbolic link; callers other than root must "
                                                "name the file itself", m->uri_path);
                        else
                                (void) snprintf(m->job.error, sizeof(m->job.error), "cannot open '%s': %s",
                                                m->uri_path, strerror(-r));
                        return r;
                }
        }

        r = source_fd_check(m->job.source_fd, !m->uri_path, m->job.error, sizeof(m->job.error));
        if (r < 0)
                return r;

        /* Our own open file description: the caller's may carry O_DIRECT or O_NONBLOCK (which
         * io_uring honours) and can be changed behind our back. Only a readable fd or a path we
         * were asked to open gets here. */
        (void) snprintf(link, sizeof(link), "/proc/self/fd/%i", m->job.source_fd);
        fd = open(link, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                r = -errno;
                (void) snprintf(m->job.error, sizeof(m->job.error), "cannot open the source for reading: %s",
                                strerror(-r));
                return r;
        }
        (void) safe_close(m->job.source_fd);
        m->job.source_fd = fd;

        r = source_fd_get_size(fd, &m->job.source_size, &m->job.source_read_async, &m->job.source_on_fuse,
                               m->job.error, sizeof(m->job.error));
        if (r < 0)
                return r;

        if (m->uri_path)
                m->job.source_description = strdup(m->uri_path);
        else {
                (void) snprintf(link, sizeof(link), "/proc/self/fd/%i", m->job.source_fd);
                n = readlink(link, target, sizeof(target) - 1);
                if (n < 0)
                        (void) snprintf(target, sizeof(target), "fd");
                else
                        target[n] = '\0';
                m->job.source_description = strdup(target);
                /* Shown as a D-Bus string, but file names need not be UTF-8. */
                if (m->job.source_description)
                        (void) utf8_sanitize(m->job.source_description);
        }
        return m->job.source_description ? 0 : -ENOMEM;
}

static int job_mount(void *userdata) {
        Mapping *m = userdata;
        int fd, r;

        /* Runs on a worker. The run file is the mount point; O_EXCL: a leftover with this name
         * means something we did not clean up, which must not be mounted over silently. */
        fd = open(m->path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0444);
        if (fd < 0) {
                r = -errno;
                (void) snprintf(m->job.error, sizeof(m->job.error), "cannot create '%s': %s", m->path, strerror(-r));
                return r;
        }
        (void) close(fd);
        m->job.run_file_created = true;

        r = fuse_file_mount(m->fuse);
        if (r < 0) {
                (void) snprintf(m->job.error, sizeof(m->job.error), "cannot mount the FUSE file on '%s'", m->path);
                return r;
        }
        return 0;
}

static int job_attach(void *userdata) {
        Mapping *m = userdata;
        int r;

        /* Runs on a worker. udev reads the file for the first event of the device, which
         * LOOP_CONFIGURE causes: it must be there before. */
        r = run_dir_write_udev_info(m->path, m->name, m->source_description, m->options.untrusted);
        if (r < 0) {
                (void) snprintf(m->job.error, sizeof(m->job.error), "cannot write '%s" RUN_DIR_UDEV_SUFFIX "': %s",
                                m->path, strerror(-r));
                return r;
        }

        /* The loop device shows the mapping's extent of what the FUSE file shows. */
        return loop_device_attach(m->path, m->options.sector_size, m->options.direct_io,
                                  m->options.offset - m->fuse_offset, m->fuse_offset == m->options.offset &&
                                  m->fuse_size == m->options.size ? 0 : m->options.size, &m->job.loop,
                                  &m->job.seqnum);
}

static int job_partscan(void *userdata) {
        Mapping *m = userdata;

        /* Runs on a worker. */
        return loop_device_enable_partscan(&m->loop, &m->job.seqnum);
}

static void on_fuse_gone(FuseFile *f _unused_, void *userdata) {
        Mapping *m = userdata;

        if (m->state == MAPPING_ACTIVE || m->state == MAPPING_ATTACHING) {
                log_mapping_warning(m, "its FUSE file '%s' was unmounted behind our back.", m->path);
                mapping_fail(m, FUSELOOP_ERROR_SETUP_FAILED, "the FUSE file '%s' was unmounted", m->path);
        }
}

static void on_partscan_done(int result, void *userdata) {
        Mapping *m = userdata;

        if (mapping_job_returned(m))
                mapping_teardown(m);
        else if (result < 0)
                mapping_fail(m, FUSELOOP_ERROR_SETUP_FAILED, "cannot enable partition scanning on /dev/loop%i: %s",
                             m->loop.nr, strerror(-result));
        else {
                m->wait_seqnum = m->job.seqnum;
                m->step = STEP_WAIT_PARTITIONS;
                m->wait_parts = mfree(m->wait_parts);
                m->n_wait_parts = loop_device_list_partitions(&m->loop, &m->wait_parts);
                if (m->n_wait_parts < 0)
                        mapping_fail(m, FUSELOOP_ERROR_SETUP_FAILED, "cannot list the partitions of /dev/loop%i: %s",
                                     m->loop.nr, strerror(-m->n_wait_parts));
                else {
                        mapping_arm_timer(m, UDEV_TIMEOUT_USEC);
                        mapping_check_partitions(m);
                }
        }
        mapping_unref(m);
}

static void mapping_disk_ready(Mapping *m) {
        mapping_disarm_timer(m);
        if (loop_device_is_bound(&m->loop) == 0) {
                m->loop_attached = false;
                mapping_fail(m, FUSELOOP_ERROR_SETUP_FAILED, "/dev/loop%i was detached by someone else during setup",
                             m->loop.nr);
                return;
        }
        if (m->options.partition_scan)
                mapping_run_job(m, STEP_PARTSCAN, job_partscan, on_partscan_done);
        else
                mapping_activate(m);
}

static void mapping_check_partitions(Mapping *m) {
        for (int i = 0; i < m->n_wait_parts; i++)
                if (!block_monitor_seen(m->manager->monitor, m->wait_parts[i].devnum, m->wait_seqnum))
                        return;
        mapping_activate(m);
}

static void on_attach_done(int result, void *userdata) {
        Mapping *m = userdata;

        if (mapping_job_returned(m)) {
                if (result >= 0) {
                        m->loop = m->job.loop;
                        m->loop_attached = true;
                }
                mapping_teardown(m);
        } else if (result == -EBUSY)
                mapping_fail(m, FUSELOOP_ERROR_NO_FREE_LOOP, "no free loop device could be had (all busy or the maximum reached)");
        else if (result < 0)
                mapping_fail(m, FUSELOOP_ERROR_SETUP_FAILED, "cannot attach a loop device to '%s': %s",
                             m->path, strerror(-result));
        else {
                _cleanup_(freep) char *dio = NULL;
                char p[128];

                m->loop = m->job.loop;
                m->loop_attached = true;
                fuse_file_set_device(m->fuse, mapping_device(m, p, sizeof(p)));
                (void) snprintf(p, sizeof(p), "/sys/block/loop%i/loop/dio", m->loop.nr);
                if (read_one_line_file(p, &dio) >= 0)
                        m->direct_io_effective = streq(dio, "1");
                log_mapping_debug(m, "attached /dev/loop%i (diskseq %" PRIu64 ").", m->loop.nr, m->loop.diskseq);

                m->step = STEP_WAIT_DISK;
                m->wait_seqnum = m->job.seqnum;
                if (block_monitor_seen(m->manager->monitor, m->loop.devnum, m->wait_seqnum))
                        mapping_disk_ready(m);
                else
                        mapping_arm_timer(m, UDEV_TIMEOUT_USEC);
        }
        mapping_unref(m);
}

static void on_mount_done(int result, void *userdata) {
        Mapping *m = userdata;
        int r;

        if (mapping_job_returned(m))
                mapping_teardown(m);
        else if (result < 0)
                mapping_fail(m, FUSELOOP_ERROR_SETUP_FAILED, "%s", m->job.error);
        else {
                m->step = STEP_NONE;
                r = fuse_file_start(m->fuse, m->manager->event, on_fuse_gone, m);
                if (r < 0)
                        mapping_fail(m, FUSELOOP_ERROR_SETUP_FAILED, "cannot serve the FUSE file: %s", strerror(-r));
                else
                        mapping_run_job(m, STEP_ATTACH, job_attach, on_attach_done);
        }
        mapping_unref(m);
}

static int mapping_watch_reads(Mapping *m);
static void on_nbd_connected(int result, const char *error, void *userdata);
static void mapping_source_ready(Mapping *m);

static void on_source_open_done(int result, void *userdata) {
        Mapping *m = userdata;
        char err[256];
        int r;

        if (mapping_job_returned(m)) {
                mapping_teardown(m);
                goto finish;
        }
        if (result < 0) {
                mapping_fail(m, FUSELOOP_ERROR_INVALID_SOURCE, "invalid source: %s", m->job.error);
                goto finish;
        }

        if (m->job.nbd) {
                r = source_nbd_start(m->job.nbd, m->manager->event, on_nbd_connected, m);
                if (r < 0) {
                        mapping_fail(m, FUSELOOP_ERROR_SETUP_FAILED, "cannot watch the NBD connection: %s",
                                     strerror(-r));
                        goto finish;
                }
                m->step = STEP_CONNECT;
                mapping_arm_timer(m, m->options.timeout_sec > 0 ?
                                             MIN(NBD_CONNECT_TIMEOUT_USEC, m->options.timeout_sec * 1000000ULL) :
                                             NBD_CONNECT_TIMEOUT_USEC);
                goto finish;
        }

        r = map_options_resolve(&m->options, m->job.source_size, err, sizeof(err));
        if (r < 0) {
                mapping_fail(m, FUSELOOP_ERROR_INVALID_OPTION, "%s", err);
                goto finish;
        }

        m->source_description = TAKE_PTR(m->job.source_description);
        m->source_read_async = m->job.source_read_async;
        m->source_on_fuse = m->job.source_on_fuse;
        r = source_fd_new(m->manager->ring, m->job.source_fd, m->job.source_size, m->job.source_read_async,
                          m->source_description,
                          &m->source);
        if (r < 0) {
                mapping_fail(m, FUSELOOP_ERROR_SETUP_FAILED, "cannot set up the source: %s", strerror(-r));
                goto finish;
        }
        m->job.source_fd = -EBADF;  /* owned by the source now */
        mapping_source_ready(m);
finish:
        mapping_unref(m);
}

static void on_source_failed(Source *s, void *userdata) {
        Mapping *m = userdata;

        log_mapping_error(m, "%s; its reads fail with EIO.", s->error);
        bus_mapping_emit_changed(m, "SourceError");
}

static void on_nbd_connected(int result, const char *error, void *userdata) {
        Mapping *m = userdata;
        char err[256];
        int r;

        if (m->step != STEP_CONNECT)
                return;
        mapping_disarm_timer(m);
        m->step = STEP_NONE;

        if (result < 0) {
                mapping_fail(m, FUSELOOP_ERROR_INVALID_SOURCE, "invalid source: %s", error);
                return;
        }

        m->source = source_nbd_get_source(TAKE_PTR(m->job.nbd));
        m->source->failed = on_source_failed;
        m->source->failed_userdata = m;
        m->source_description = strdup(m->source->description);
        if (!m->source_description) {
                mapping_fail(m, FUSELOOP_ERROR_SETUP_FAILED, "out of memory");
                return;
        }
        r = map_options_resolve(&m->options, m->source->size, err, sizeof(err));
        if (r < 0) {
                mapping_fail(m, FUSELOOP_ERROR_INVALID_OPTION, "%s", err);
                return;
        }
        mapping_source_ready(m);
}

/* Passthrough for fd sources, unless the daemon must see every read: to answer a read that
 * outlives the timeout option with EIO, or to watch a source that is itself served by a process
 * (a file on FUSE, maybe our own) that may hang. */
static bool mapping_wants_passthrough(const Mapping *m) {
        return m->options.passthrough && source_fd_get_fd(m->source) >= 0 && m->options.timeout_sec == 0 &&
               !m->source_on_fuse;
}

/* The source is there and the options fit it: the FUSE session comes next. */
static void mapping_source_ready(Mapping *m) {
        int fd = source_fd_get_fd(m->source);
        bool want_passthrough = mapping_wants_passthrough(m), passthrough = false;
        int r;

        /* Passthrough maps offsets 1:1: the FUSE file shows the whole source, and the loop device
         * the mapping's part of it. Should the kernel refuse passthrough, the daemon serves that
         * file as any other. */
        if (want_passthrough) {
                m->fuse_offset = 0;
                m->fuse_size = m->source->size;
        } else {
                m->fuse_offset = m->options.offset;
                m->fuse_size = m->options.size;
        }
        r = fuse_file_new(m->name, m->path, m->source, m->fuse_offset, m->fuse_size, &m->fuse);
        if (r < 0) {
                mapping_fail(m, FUSELOOP_ERROR_SETUP_FAILED, "cannot create the FUSE session: %s", strerror(-r));
                return;
        }
        if (want_passthrough) {
                r = fuse_file_set_passthrough(m->fuse, fd);
                if (r < 0)
                        log_mapping_warning_errno(m, r, "cannot ask for passthrough: %m; fuseloopd reads the source.");
                else
                        passthrough = true;
        }
        /* Reads through the daemon: the loop device reads its backing file with direct I/O.
         * Buffered, the loop driver reads one request at a time through the FUSE file's page
         * cache, which keeps a second copy of everything the device's own cache holds; direct,
         * it submits every request asynchronously (FUSE_ASYNC_DIO) and nothing is cached twice.
         * Passthrough reads the source's page cache, as a loop device on the file itself does. */
        if (!m->options.direct_io_set)
                m->options.direct_io = !passthrough;
        r = mapping_watch_reads(m);
        if (r < 0) {
                mapping_fail(m, FUSELOOP_ERROR_SETUP_FAILED, "cannot watch the reads of the FUSE session: %s",
                             strerror(-r));
                return;
        }

        mapping_run_job(m, STEP_MOUNT, job_mount, on_mount_done);
}

static int on_caller_owner_changed(sd_bus_message *msg, void *userdata, sd_bus_error *error _unused_) {
        Mapping *m = userdata;
        const char *name, *old, *new;

        /* The match names the bus as sender, but a signal sent to us directly matches it too:
         * anyone could claim that the caller left. */
        if (!streq_ptr(sd_bus_message_get_sender(msg), "org.freedesktop.DBus"))
                return 0;

        if (sd_bus_message_read(msg, "sss", &name, &old, &new) < 0)
                return 0;
        if (isempty(new))
                mapping_caller_gone(m);
        return 0;
}

static int on_caller_check_reply(sd_bus_message *reply, void *userdata, sd_bus_error *error _unused_) {
        Mapping *m = userdata;

        /* The match is in place now; a caller that left before it was would be missed, so ask
         * once whether it is still there. */
        if (sd_bus_message_is_method_error(reply, NULL) &&
            sd_bus_message_is_method_error(reply, "org.freedesktop.DBus.Error.NameHasNoOwner"))
                mapping_caller_gone(m);
        mapping_unref(m);
        return 0;
}

static int on_caller_match_installed(sd_bus_message *reply, void *userdata, sd_bus_error *error _unused_) {
        Mapping *m = userdata;
        sd_bus *bus = sd_bus_message_get_bus(reply);
        int r;

        if (sd_bus_message_is_method_error(reply, NULL)) {
                log_mapping_warning(m, "cannot follow its caller: %s",
                                    sd_bus_message_get_error(reply)->message);
                return 0;
        }

        r = sd_bus_call_method_async(bus, NULL, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                     "org.freedesktop.DBus", "GetNameOwner", on_caller_check_reply, m, "s",
                                     m->caller);
        if (r >= 0)
                mapping_ref(m);
        return 0;
}

static void mapping_follow_caller(Mapping *m) {
        _cleanup_(freep) char *match = NULL;
        int r;

        if (!m->caller || !m->manager->bus)
                return;

        if (asprintf(&match,
                     "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',"
                     "interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='%s'", m->caller) < 0) {
                match = NULL;
                log_oom();
                return;
        }

        m->caller_slot = sd_bus_slot_unref(m->caller_slot);
        r = sd_bus_add_match_async(m->manager->bus, &m->caller_slot, match, on_caller_owner_changed,
                                   on_caller_match_installed, m);
        if (r < 0)
                log_mapping_warning_errno(m, r, "cannot follow its caller: %m, ignoring");
}

void mapping_start(Mapping *m, sd_bus_message *call, const char *caller) {
        m->map_call = sd_bus_message_ref(call);

        if (m->options.bind_to_caller && caller) {
                m->caller = strdup(caller);
                if (!m->caller) {
                        mapping_fail(m, FUSELOOP_ERROR_SETUP_FAILED, "out of memory");
                        return;
                }
                mapping_follow_caller(m);
        }

        mapping_run_job(m, STEP_OPEN_SOURCE, job_open_source, on_source_open_done);
}

/* Hands the mapping's fds and its restart record to the service manager's fd store, so that a
 * restarted daemon can resume serving it. */
static void mapping_store(Mapping *m) {
        RestartRecord rec = {
                .name = m->name,
                .owner_uid = m->owner_uid,
                .created_usec = m->created_usec,
                .uri_path = m->uri_path,
                .source_description = m->source_description,
                .options = m->options,
                .loop_nr = m->loop.nr,
                .loop_diskseq = m->loop.diskseq,
                .loop_read_ios_base = m->loop.read_ios_base,
                .loop_read_sectors_base = m->loop.read_sectors_base,
                .direct_io_effective = m->direct_io_effective,
                .source_read_async = m->source_read_async,
                .caller = m->caller,
                .fuse_offset = m->fuse_offset,
                .fuse_size = m->fuse_size,
                .passthrough_id = fuse_file_get_passthrough_id(m->fuse),
        };
        const uint8_t *init;
        int r;

        if (!fd_store_available())
                return;

        if (source_is_nbd(m->source)) {
                /* An NBD connection cannot be handed on in the middle of the protocol. */
                log_mapping_notice(m, "an NBD source cannot be handed to a restarted fuseloopd; the mapping "
                                   "is removed when fuseloopd stops.");
                return;
        }

        fuse_file_get_init(m->fuse, &init, &rec.fuse_init_size);
        rec.fuse_init = (uint8_t *) init;
        if (!init) {
                log_mapping_warning(m, "no FUSE_INIT was kept; it cannot survive a restart of fuseloopd.");
                return;
        }

        r = fd_store_put_mapping(m->loop.diskseq, fuse_file_get_fd(m->fuse), source_fd_get_fd(m->source), &rec);
        if (r < 0)
                log_mapping_warning_errno(m, r, "cannot put its fds into the fd store: %m; it cannot survive a "
                                          "restart of fuseloopd");
        else
                m->stored = true;
}

static void mapping_activate(Mapping *m) {
        char dev[32];

        mapping_disarm_timer(m);
        m->step = STEP_NONE;

        if (m->manager->shutting_down) {
                mapping_fail(m, FUSELOOP_ERROR_SETUP_FAILED, "fuseloopd is shutting down");
                return;
        }

        m->state = MAPPING_ACTIVE;
        m->published = true;
        bus_mapping_emit_added(m);
        mapping_store(m);

        /* Not inside the log call: its arguments are not evaluated below the log level. */
        (void) mapping_device(m, dev, sizeof(dev));
        log_mapping_info(m, "%s is active (source '%s', %" PRIu64 " bytes at offset %" PRIu64 ").", dev,
                         m->source_description, m->options.size, m->options.offset);

        if (m->map_call) {
                int r = sd_bus_reply_method_return(m->map_call, "os", m->object_path, dev);

                if (r < 0)
                        log_mapping_debug_errno(m, r, "cannot reply to Map: %m");
                m->map_call = sd_bus_message_unref(m->map_call);
        }

        manager_update_status(m->manager);

        if (m->caller_gone)
                mapping_unmap(m, true, NULL, FUSELOOP_REASON_CALLER_GONE);
}

/* ------------------------------------------------------------------------------------------ */
/* Detach and teardown */

static void mapping_reply_error(Mapping *m, sd_bus_message **call, const char *name, const char *fmt, ...)
        _printf_(4, 5);

static void mapping_reply_error(Mapping *m, sd_bus_message **call, const char *name, const char *fmt, ...) {
        _cleanup_(freep) char *msg = NULL;
        va_list ap;
        int r;

        if (!*call)
                return;

        va_start(ap, fmt);
        msg = vasprintf_or_null(fmt, ap);
        va_end(ap);
        /* A D-Bus error message must be UTF-8, but it may quote a file name, or a path cut short
         * in a fixed buffer in the middle of a character. */
        if (msg)
                (void) utf8_sanitize(msg);

        r = sd_bus_reply_method_errorf(*call, name, "%s", msg ?: "out of memory");
        if (r < 0)
                log_mapping_debug_errno(m, r, "cannot send a reply: %m");
        *call = sd_bus_message_unref(*call);
}

static void mapping_finish(Mapping *m) {
        Manager *manager = m->manager;

        m->step = STEP_NONE;
        mapping_disarm_timer(m);

        /* Our fds are closed by now; the store's copies keep the FUSE connection alive until
         * they go as well. */
        if (m->stored) {
                fd_store_remove_mapping(m->loop.diskseq);
                m->stored = false;
        }

        if (m->published) {
                log_mapping_info(m, "removed (%s).", m->remove_reason ?: FUSELOOP_REASON_FAILED);
                bus_mapping_emit_removed(m, m->remove_reason ?: FUSELOOP_REASON_FAILED);
                m->published = false;
        }

        if (m->map_call)
                mapping_reply_error(m, &m->map_call, m->error_name ?: FUSELOOP_ERROR_SETUP_FAILED, "%s",
                                    m->error_message ?: "the mapping failed");
        if (m->unmap_call) {
                int r = sd_bus_reply_method_return(m->unmap_call, NULL);

                if (r < 0)
                        log_mapping_debug_errno(m, r, "cannot reply to Unmap: %m");
                m->unmap_call = sd_bus_message_unref(m->unmap_call);
        }

        manager_remove_mapping(manager, m);
        mapping_unref(m);
        manager_update_status(manager);
}

static int job_unmount(void *userdata) {
        Mapping *m = userdata;
        int r;

        /* Runs on a worker: a lazy unmount of our own FUSE file (it waits for no answer from us:
         * the kernel sends no request to a plain FUSE mount that goes), then its mount point goes.
         * EINVAL: nothing mounted there (the mount failed, or it was made in the mount namespace
         * of an earlier daemon that is gone). The session's fd is closed when it is freed, on the
         * loop. The source is closed here too: it may be one of our own loop devices, whose last
         * close flushes through our FUSE files. */
        m->job.source = source_free(m->job.source);
        if (!m->job.run_file_created)
                return 0;  /* never touch a file that is not ours */

        if (umount2(m->path, MNT_DETACH | UMOUNT_NOFOLLOW) < 0 && errno != EINVAL && errno != ENOENT)
                log_debug_errno(errno, "Failed to unmount '%s': %m", m->path);
        r = run_dir_remove_udev_info(m->path);
        if (r < 0)
                log_debug_errno(r, "Failed to remove '%s" RUN_DIR_UDEV_SUFFIX "': %m", m->path);
        if (unlink(m->path) < 0 && errno != ENOENT)
                return -errno;
        m->job.run_file_created = false;
        return 0;
}

static void on_unmount_done(int result, void *userdata) {
        Mapping *m = userdata;

        (void) mapping_job_returned(m);
        if (result < 0)
                log_mapping_warning_errno(m, result, "cannot remove '%s': %m, ignoring", m->path);
        m->fuse = fuse_file_free(m->fuse);
        mapping_finish(m);
        mapping_unref(m);
}

static void on_drained(void *userdata) {
        Mapping *m = userdata;

        mapping_teardown(m);
}

static int job_detach(void *userdata) {
        Mapping *m = userdata;

        /* Runs on a worker. */
        return loop_device_detach(&m->loop, m->lazy);
}

static int job_cancel_autoclear(void *userdata) {
        Mapping *m = userdata;

        /* Runs on a worker. */
        return loop_device_cancel_autoclear(&m->loop);
}

/* Notes what udev has to process once the device is released: an event of the disk and the
 * removal of every partition, all after now. Called before LOOP_CLR_FD is issued. */
static void mapping_expect_release(Mapping *m) {
        int n;

        m->wait_seqnum = 0;
        (void) uevent_seqnum_read(&m->wait_seqnum);
        m->wait_parts = mfree(m->wait_parts);
        n = loop_device_list_partitions(&m->loop, &m->wait_parts);
        m->n_wait_parts = MAX(n, 0);
}

static bool mapping_release_processed(Mapping *m) {
        if (!block_monitor_seen(m->manager->monitor, m->loop.devnum, m->wait_seqnum))
                return false;
        for (int i = 0; i < m->n_wait_parts; i++)
                if (!block_monitor_seen(m->manager->monitor, m->wait_parts[i].devnum, m->wait_seqnum))
                        return false;
        return true;
}

static void mapping_check_removed(Mapping *m) {
        if (!mapping_release_processed(m))
                return;
        mapping_disarm_timer(m);
        m->step = STEP_NONE;
        mapping_teardown(m);
}

static void mapping_released(Mapping *m) {
        mapping_disarm_timer(m);
        m->loop_attached = false;
        log_mapping_debug(m, "/dev/loop%i released its backing file.", m->loop.nr);

        /* Unmap returns when /dev/fuseloop/<name> and the partitions' links are gone, so that a
         * caller never finds a link of a mapping it removed, nor a partition node about to go. */
        m->step = STEP_WAIT_REMOVED;
        if (mapping_release_processed(m))
                mapping_check_removed(m);
        else
                mapping_arm_timer(m, UDEV_REMOVE_TIMEOUT_USEC);
}

/* A refused or failed unmap leaves the mapping active again. A shutdown or a caller that left
 * while the unmap was tried must not be forgotten: they unmap lazily now. */
static void mapping_unmap_refused(Mapping *m, const char *error_name, const char *fmt, ...) _printf_(3, 4);

static void mapping_unmap_refused(Mapping *m, const char *error_name, const char *fmt, ...) {
        _cleanup_(freep) char *msg = NULL;
        va_list ap;

        va_start(ap, fmt);
        msg = vasprintf_or_null(fmt, ap);
        va_end(ap);

        mapping_disarm_timer(m);
        m->step = STEP_NONE;
        m->remove_reason = NULL;
        mapping_set_state(m, MAPPING_ACTIVE);
        mapping_reply_error(m, &m->unmap_call, error_name, "%s", msg ?: "out of memory");

        if (m->manager->shutting_down)
                mapping_unmap(m, true, NULL, FUSELOOP_REASON_SHUTDOWN);
        else if (m->caller_gone)
                mapping_unmap(m, true, NULL, FUSELOOP_REASON_CALLER_GONE);
}

static void on_cancel_autoclear_done(int result, void *userdata) {
        Mapping *m = userdata;
        char dev[32];

        (void) mapping_job_returned(m);
        if (result == -ESTALE)
                /* Released while we waited: the unmap succeeded after all. */
                mapping_released(m);
        else {
                if (result < 0)
                        log_mapping_warning_errno(m, result, "cannot cancel the pending detach: %m, ignoring");
                mapping_unmap_refused(m, FUSELOOP_ERROR_BUSY,
                                      "'%s' (%s) is still open by another process; close it or unmap lazily",
                                      m->name, mapping_device(m, dev, sizeof(dev)));
        }
        mapping_unref(m);
}

static void on_detach_done(int result, void *userdata) {
        Mapping *m = userdata;
        char dev[32];

        (void) mapping_job_returned(m);
        (void) mapping_device(m, dev, sizeof(dev));

        if (result == -EBUSY)
                mapping_unmap_refused(m, FUSELOOP_ERROR_BUSY,
                                      "'%s' (%s) is in use (mounted?); unmount it first or unmap lazily", m->name, dev);
        else if (result < 0) {
                log_mapping_warning_errno(m, result, "cannot detach %s: %m", dev);
                if (m->state == MAPPING_DETACHING)
                        mapping_unmap_refused(m, FUSELOOP_ERROR_SETUP_FAILED, "cannot detach %s: %s", dev,
                                              strerror(-result));
                else {
                        /* Tearing down after a failure: leave the device to the kernel. */
                        m->loop_attached = false;
                        mapping_teardown(m);
                }
        } else if (result == 0)
                mapping_released(m);
        else {
                /* Someone still has it open: the kernel detaches at the last close. */
                m->step = STEP_WAIT_RELEASE;
                if (m->lazy) {
                        if (m->unmap_call) {
                                (void) sd_bus_reply_method_return(m->unmap_call, NULL);
                                m->unmap_call = sd_bus_message_unref(m->unmap_call);
                        }
                        /* A failed Map is answered now, not when the last user lets go. */
                        if (m->map_call)
                                mapping_reply_error(m, &m->map_call, m->error_name ?: FUSELOOP_ERROR_SETUP_FAILED,
                                                    "%s; %s is still open and is detached at its last close",
                                                    m->error_message ?: "the mapping failed", dev);
                        log_mapping_info(m, "%s is in use; it is detached when its last user closes it.", dev);
                        manager_update_status(m->manager);
                        /* udev tells us when it is released; look ourselves now and then in case an
                         * event was lost. */
                        mapping_arm_timer(m, RELEASE_RECHECK_USEC);
                } else
                        mapping_arm_timer(m, RELEASE_TIMEOUT_USEC);

                /* It may have gone while we were looking. */
                if (loop_device_is_bound(&m->loop) == 0)
                        mapping_released(m);
        }
        mapping_unref(m);
}

static void mapping_teardown(Mapping *m) {
        if (m->job_running)
                return;  /* the job's done callback continues */

        if (m->loop_attached) {
                if (m->step == STEP_WAIT_RELEASE)
                        return;
                m->lazy = true;
                mapping_expect_release(m);
                mapping_run_job(m, STEP_DETACH, job_detach, on_detach_done);
                return;
        }

        if (m->fuse) {
                fuse_file_stop(m->fuse);
                if (fuse_file_drain(m->fuse, on_drained, m)) {
                        m->step = STEP_DRAIN;
                        return;
                }
        }

        /* Still connecting: the handshake ends here. */
        m->job.nbd = source_nbd_free(m->job.nbd);

        if (m->fuse || m->source || m->job.run_file_created) {
                source_stop(m->source);
                m->job.source = TAKE_PTR(m->source);
                mapping_run_job(m, STEP_UNMOUNT, job_unmount, on_unmount_done);
                return;
        }

        mapping_finish(m);
}

static void mapping_fail(Mapping *m, const char *error_name, const char *fmt, ...) {
        _cleanup_(freep) char *msg = NULL;
        char dev[32];
        va_list ap;

        va_start(ap, fmt);
        msg = vasprintf_or_null(fmt, ap);
        va_end(ap);

        if (!m->error_name) {
                m->error_name = strdup(error_name);
                m->error_message = msg ? strdup(msg) : NULL;
        }
        if (m->published)
                log_mapping_error(m, "%s", msg ?: error_name);
        else
                (void) log_mapping_name_full_errno(m->name, mapping_device(m, dev, sizeof(dev)), LOG_INFO, 0,
                                                   "not created: %s", msg ?: error_name);

        if (!m->remove_reason)
                m->remove_reason = FUSELOOP_REASON_FAILED;
        mapping_disarm_timer(m);
        if (m->step == STEP_WAIT_DISK || m->step == STEP_WAIT_PARTITIONS)
                m->step = STEP_NONE;
        mapping_set_state(m, MAPPING_FAILED);
        mapping_teardown(m);
}

void mapping_unmap(Mapping *m, bool lazy, sd_bus_message *call, const char *reason) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *c = sd_bus_message_ref(call);

        if (m->manager->handing_over || m->manager->stop_query_pending) {
                /* The mapping is about to be, or is being, left to the next instance. */
                mapping_reply_error(m, &c, FUSELOOP_ERROR_BUSY, "fuseloopd is stopping; unmap '%s' once it is back",
                                    m->name);
                return;
        }

        switch (m->state) {
        case MAPPING_ACTIVE:
                break;
        case MAPPING_ATTACHING:
                mapping_reply_error(m, &c, FUSELOOP_ERROR_BUSY, "'%s' is still being set up", m->name);
                return;
        case MAPPING_DETACHING:
        case MAPPING_FAILED:
        default:
                if (lazy && m->step == STEP_WAIT_RELEASE && m->lazy && c) {
                        /* Already detaching lazily: asking again is not an error. */
                        (void) sd_bus_reply_method_return(c, NULL);
                        return;
                }
                mapping_reply_error(m, &c, FUSELOOP_ERROR_BUSY, "'%s' is already being unmapped", m->name);
                return;
        }

        m->unmap_call = TAKE_PTR(c);
        m->lazy = lazy;
        m->remove_reason = reason;
        mapping_set_state(m, MAPPING_DETACHING);
        mapping_expect_release(m);
        mapping_run_job(m, STEP_DETACH, job_detach, on_detach_done);
}

void mapping_shutdown(Mapping *m) {
        /* Attaching mappings that wait for udev fail now; those with a job running fail when it
         * returns; failing or detaching ones are on their way out already. */
        if (m->state == MAPPING_ACTIVE)
                mapping_unmap(m, true, NULL, FUSELOOP_REASON_SHUTDOWN);
        else if (m->state == MAPPING_ATTACHING && !m->job_running)
                mapping_fail(m, FUSELOOP_ERROR_SETUP_FAILED, "fuseloopd is shutting down");
}

void mapping_caller_gone(Mapping *m) {
        if (m->caller_gone || m->manager->handing_over)
                return;
        m->caller_gone = true;
        log_mapping_info(m, "its caller %s disconnected; unmapping it.", m->caller ?: "");
        if (m->state == MAPPING_ACTIVE)
                mapping_unmap(m, true, NULL, FUSELOOP_REASON_CALLER_GONE);
}

void mapping_bus_reconnected(Mapping *m) {
        m->caller_slot = sd_bus_slot_unref(m->caller_slot);
        /* Unique names do not survive the bus: a bound caller is gone. */
        if (m->caller)
                mapping_caller_gone(m);
}

static int on_timer(sd_event_source *s _unused_, uint64_t usec _unused_, void *userdata) {
        Mapping *m = userdata;

        m->timer = sd_event_source_disable_unref(m->timer);

        switch (m->step) {
        case STEP_WAIT_DISK:
        case STEP_WAIT_PARTITIONS:
                mapping_fail(m, FUSELOOP_ERROR_TIMEOUT, "udev did not process /dev/loop%i in time%s", m->loop.nr,
                             block_monitor_is_udev(m->manager->monitor) ? "" : " (no udevd running)");
                break;
        case STEP_WAIT_RELEASE:
                if (loop_device_is_bound(&m->loop) == 0)
                        mapping_released(m);
                else if (!m->lazy && m->state == MAPPING_DETACHING)
                        mapping_run_job(m, STEP_CANCEL_AUTOCLEAR, job_cancel_autoclear, on_cancel_autoclear_done);
                else
                        mapping_arm_timer(m, RELEASE_RECHECK_USEC);
                break;
        case STEP_CONNECT:
                mapping_fail(m, FUSELOOP_ERROR_TIMEOUT, "the NBD server did not complete the handshake in time");
                break;
        case STEP_WAIT_REMOVED:
                log_mapping_warning(m, "udev did not process the release of /dev/loop%i in time; its links may "
                                    "linger for a while.", m->loop.nr);
                m->step = STEP_NONE;
                mapping_teardown(m);
                break;
        default:
                break;
        }
        return 0;
}

void mapping_on_block_event(Mapping *m, const char *action _unused_, dev_t devnum, uint64_t seqnum) {
        if (m->step == STEP_WAIT_REMOVED) {
                mapping_check_removed(m);
                return;
        }
        if (!m->loop_attached || m->manager->handing_over)
                return;

        switch (m->step) {
        case STEP_WAIT_DISK:
                if (devnum == m->loop.devnum && seqnum > m->wait_seqnum)
                        mapping_disk_ready(m);
                return;
        case STEP_WAIT_PARTITIONS:
                mapping_check_partitions(m);
                return;
        default:
                break;
        }

        if (devnum != m->loop.devnum || m->job_running)
                return;
        if (m->state != MAPPING_ACTIVE && m->step != STEP_WAIT_RELEASE)
                return;
        if (loop_device_is_bound(&m->loop) != 0)
                return;

        if (m->step == STEP_WAIT_RELEASE)
                mapping_released(m);
        else {
                log_mapping_notice(m, "/dev/loop%i was detached behind our back; removing the mapping.",
                                   m->loop.nr);
                m->remove_reason = FUSELOOP_REASON_DETACHED;
                m->loop_attached = false;
                mapping_set_state(m, MAPPING_DETACHING);
                mapping_teardown(m);
        }
}

/* ------------------------------------------------------------------------------------------ */
/* Resume after a restart */

/* /dev/fuse is the misc device 10:229. */
static bool fd_is_fuse_device(int fd) {
        struct stat st;

        return fstat(fd, &st) >= 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == 10 && minor(st.st_rdev) == 229;
}

/* Reads and checks the restart record of s. */
static int stored_mapping_read_record(Manager *manager, StoredMapping *s, RestartRecord *rec) {
        _cleanup_(freep) char *text = NULL;
        char err[256] = "";
        size_t len;
        int seals, r;

        for (FdStoreKind k = 0; k < _FD_STORE_KIND_MAX; k++)
                if (s->fds[k] < 0)
                        return log_error_errno(EBADF, "Stored mapping %" PRIu64 " is incomplete (no %s fd); cleaning it up.",
                                               s->diskseq, fd_store_kind_to_string(k));

        /* Only a sealed memfd is read as a record (a read of anything else could have side
         * effects, such as taking a request off a FUSE connection). */
        seals = fcntl(s->fds[FD_STORE_RECORD], F_GET_SEALS);
        if (seals < 0 || !(seals & F_SEAL_WRITE))
                return log_error_errno(EBADF, "Stored mapping %" PRIu64 ": its record is not a sealed memfd; cleaning it up.", s->diskseq);
        if (!fd_is_fuse_device(s->fds[FD_STORE_FUSE]))
                return log_error_errno(EBADF, "Stored mapping %" PRIu64 ": its FUSE fd is not /dev/fuse; cleaning it up.", s->diskseq);

        r = fd_store_read_record(s->fds[FD_STORE_RECORD], &text, &len);
        if (r < 0)
                return log_error_errno(r, "Stored mapping %" PRIu64 ": cannot read its record: %m; cleaning it up.", s->diskseq);
        r = restart_record_parse(text, len, rec, err, sizeof(err));
        if (r < 0)
                return log_error_errno(r, "Stored mapping %" PRIu64 ": bad record: %s; cleaning it up.", s->diskseq, err);

        if (rec->loop_diskseq != s->diskseq)
                return log_mapping_name_full_errno(rec->name, NULL, LOG_ERR, EINVAL, "cannot be resumed: its record "
                                                   "names disk sequence number %" PRIu64 ", its fds %" PRIu64
                                                   "; cleaning it up.", rec->loop_diskseq, s->diskseq);
        if (manager_find_mapping(manager, rec->name))
                return log_mapping_name_full_errno(rec->name, NULL, LOG_ERR, EEXIST,
                                                   "is stored twice; cleaning up the second.");
        return 0;
}

int mapping_resume(Manager *manager, StoredMapping *s) {
        _cleanup_(restart_record_done) RestartRecord rec = RESTART_RECORD_INIT;
        _cleanup_(freep) char *autoclear = NULL;
        LoopDevice loop;
        struct statx stx;
        BlockStat bs;
        char p[128], dev[32];
        Mapping *m;
        int r;

        r = stored_mapping_read_record(manager, s, &rec);
        if (r < 0)
                return r;
        (void) snprintf(dev, sizeof(dev), "/dev/loop%i", rec.loop_nr);

        r = loop_device_find_attached(rec.loop_nr, rec.loop_diskseq, &loop);
        if (r < 0)
                return log_mapping_name_full_errno(rec.name, dev, LOG_ERR, r, "cannot be resumed: %s is no longer "
                                                   "the device it was attached as (%m); cleaning it up.", dev);

        /* The type only, from the inode as cached: the source may be a file of ours, which
         * nobody answers yet. */
        if (statx(s->fds[FD_STORE_SOURCE], "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_TYPE, &stx) < 0 ||
            !(S_ISREG(stx.stx_mode) || S_ISBLK(stx.stx_mode)))
                return log_mapping_name_full_errno(rec.name, dev, LOG_ERR, EBADF, "cannot be resumed: its stored "
                                                   "source is not a regular file or block device; cleaning it up.");

        r = mapping_new(manager, rec.name, -EBADF, rec.uri_path, &rec.options, rec.owner_uid, &m);
        if (r < 0)
                return log_mapping_name_full_errno(rec.name, dev, LOG_ERR, r, "cannot be resumed: %m");
        m->created_usec = rec.created_usec;
        m->direct_io_effective = rec.direct_io_effective;
        m->source_read_async = rec.source_read_async;
        m->caller = TAKE_PTR(rec.caller);
        m->source_description = TAKE_PTR(rec.source_description);
        m->loop = loop;
        m->loop.read_ios_base = rec.loop_read_ios_base;
        m->loop.read_sectors_base = rec.loop_read_sectors_base;
        m->loop_attached = true;
        m->job.run_file_created = true;  /* the file is ours, and so is a mount on it */
        /* Our counters start from zero again, so the cache hit ratio counts from here too. */
        if (block_stat_read_loop(loop.nr, &bs) >= 0)
                m->cache_sectors_base = bs.read_sectors;

        m->fuse_offset = rec.fuse_offset;
        m->fuse_size = rec.fuse_size;
        r = source_fd_new(manager->ring, s->fds[FD_STORE_SOURCE], m->fuse_offset + m->fuse_size,
                          m->source_read_async, m->source_description, &m->source);
        if (r < 0)
                goto fail;
        s->fds[FD_STORE_SOURCE] = -EBADF;

        r = fuse_file_new(m->name, m->path, m->source, m->fuse_offset, m->fuse_size, &m->fuse);
        if (r < 0)
                goto fail;
        fuse_file_set_device(m->fuse, mapping_device(m, dev, sizeof(dev)));
        r = mapping_watch_reads(m);
        if (r < 0)
                goto fail;
        r = fuse_file_resume(m->fuse, TAKE_FD(s->fds[FD_STORE_FUSE]), rec.fuse_init, rec.fuse_init_size);
        if (r < 0)
                goto fail;
        /* The connection still has the registration the earlier daemon made, and the files open
         * through it need new opens to use the same. */
        if (rec.passthrough_id > 0) {
                r = fuse_file_adopt_passthrough(m->fuse, rec.passthrough_id);
                if (r < 0)
                        goto fail;
        }
        r = fuse_file_start(m->fuse, manager->event, on_fuse_gone, m);
        if (r < 0)
                goto fail;

        /* It stays in the store under the same names: nothing changed. */
        m->stored = true;
        m->state = MAPPING_ACTIVE;

        /* An unmap in progress: the earlier daemon detached lazily and waited for the last user. */
        (void) snprintf(p, sizeof(p), "/sys/block/loop%i/loop/autoclear", m->loop.nr);
        if (read_one_line_file(p, &autoclear) >= 0 && streq(autoclear, "1")) {
                m->state = MAPPING_DETACHING;
                m->step = STEP_WAIT_RELEASE;
                m->lazy = true;
                m->remove_reason = FUSELOOP_REASON_UNMAPPED;
                mapping_expect_release(m);
                mapping_arm_timer(m, RELEASE_RECHECK_USEC);
        }

        log_mapping_info(m, "resumed %s (source '%s')%s.", mapping_device(m, dev, sizeof(dev)),
                         m->source_description, m->state == MAPPING_DETACHING ? ", detaching at its last close" : "");
        return 0;

fail:
        (void) log_mapping_name_full_errno(m->name, mapping_device(m, dev, sizeof(dev)), LOG_ERR, r,
                                           "cannot be resumed: %m; cleaning it up.");
        /* Its loop device and run file are not kept: the start-up clean-up takes them. */
        m->loop_attached = false;
        m->job.run_file_created = false;
        if (m->fuse)
                fuse_file_stop(m->fuse);
        manager_remove_mapping(manager, m);
        mapping_unref(m);
        return r;
}

void mapping_publish_resumed(Mapping *m) {
        if (m->published)
                return;
        m->published = true;
        bus_mapping_emit_added(m);
        if (m->caller)
                mapping_follow_caller(m);
}

/* ------------------------------------------------------------------------------------------ */
/* Reads that wait for the source */

static void on_fuse_stalled(FuseFile *f _unused_, bool stalled _unused_, void *userdata) {
        Mapping *m = userdata;

        /* The FUSE session logged it; Stalled reads its state from there. */
        bus_mapping_emit_changed(m, "Stalled");
}

/* Gives the mapping's FUSE session its read timeout and has it report stalls. */
static int mapping_watch_reads(Mapping *m) {
        return fuse_file_set_timeout(m->fuse, m->manager->event, (uint64_t) m->options.timeout_sec * 1000000ULL,
                                     on_fuse_stalled, m);
}

/* ------------------------------------------------------------------------------------------ */
/* Hand over to the next instance */

bool mapping_can_hand_over(const Mapping *m) {
        if (!m->stored || m->job_running)
                return false;
        return (m->state == MAPPING_ACTIVE && m->step == STEP_NONE) ||
               (m->state == MAPPING_DETACHING && m->step == STEP_WAIT_RELEASE && m->lazy);
}

static void mapping_handed_over(void *userdata) {
        Mapping *m = userdata;
        Manager *manager = m->manager;

        /* Our fds close with the mapping; the store's copies keep everything in place. */
        manager_remove_mapping(manager, m);
        mapping_unref(m);
        manager_update_status(manager);
}

void mapping_hand_over(Mapping *m) {
        mapping_disarm_timer(m);
        m->caller_slot = sd_bus_slot_unref(m->caller_slot);
        m->stored = false;  /* stays there, for the next instance */
        m->published = false;
        /* Requests not taken yet wait in the kernel for the next instance; those taken are
         * answered first. */
        fuse_file_stop(m->fuse);
        if (!fuse_file_drain(m->fuse, mapping_handed_over, m))
                mapping_handed_over(m);
}