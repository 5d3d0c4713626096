/* Loop devices: attach a file read-only, enable partition scanning, detach, and read their state
 * from sysfs.
 *
 * Everything here that opens a loop device or issues a loop ioctl can make the kernel call into
 * the backing file, which is one of our own FUSE files: those functions run on workers only. State
 * is read from sysfs, never with LOOP_GET_STATUS64 on the loop thread (it calls getattr on the
 * backing file). */
#include <dirent.h>
#include <limits.h>
#include <blkid.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/blkpg.h>
#include <linux/loop.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "loop-device.h"
#include "macro.h"
#include "util.h"

#define ATTACH_ATTEMPTS 64
/* About 30 s of 64 ms waits for the loop-control lock. */
#define LOCK_ATTEMPTS 480

int parse_devnum(const char *s, dev_t *ret) {
        char buf[64];
        const char *colon;
        uint64_t maj, min;
        int r;

        colon = strchr(s, ':');
        if (!colon || (size_t) (colon - s) >= sizeof(buf))
                return -EINVAL;
        memcpy(buf, s, (size_t) (colon - s));
        buf[colon - s] = '\0';

        r = safe_atou64(buf, &maj);
        if (r >= 0)
                r = safe_atou64(colon + 1, &min);
        if (r < 0)
                return r;
        if (maj > 0xfff || min > 0xfffff)
                return -ERANGE;

        *ret = makedev((unsigned) maj, (unsigned) min);
        return 0;
}

bool sysfs_partition_name_parse(const char *disk, const char *name, unsigned *ret_partno) {
        const char *p;
        uint64_t n;

        p = startswith(name, disk);
        if (!p || *p != 'p' || p[1] == '0')
                return false;
        if (safe_atou64(p + 1, &n) < 0 || n == 0 || n > 65535)
                return false;
        if (ret_partno)
                *ret_partno = (unsigned) n;
        return true;
}

int uevent_seqnum_read(uint64_t *ret) {
        return read_u64_file("/sys/kernel/uevent_seqnum", ret);
}

static int loop_sysfs_path(char *buf, size_t len, int nr, const char *attr) {
        int n = snprintf(buf, len, "/sys/block/loop%i/%s", nr, attr);

        return n < 0 || (size_t) n >= len ? -ENAMETOOLONG : 0;
}

int loop_device_read_backing_file(int nr, char **ret) {
        char p[128];
        int r;

        r = loop_sysfs_path(p, sizeof(p), nr, "loop/backing_file");
        if (r < 0)
                return r;
        return read_one_line_file(p, ret);
}

static int loop_read_diskseq(int nr, uint64_t *ret) {
        char p[128];
        int r;

        r = loop_sysfs_path(p, sizeof(p), nr, "diskseq");
        if (r < 0)
                return r;
        return read_u64_file(p, ret);
}

int loop_device_is_bound(const LoopDevice *d) {
        _cleanup_(freep) char *backing = NULL;
        uint64_t seq;
        int r;

        /* The disk sequence number changes with every attach, so an unchanged one with a backing
         * file still there is our attachment. Not the backing file's name: after a restart the
         * kernel may name it "/" (the mount namespace that made it is gone, see run-dir.c). */
        r = loop_read_diskseq(d->nr, &seq);
        if (r == -ENOENT)
                return 0;  /* the device itself was removed */
        if (r < 0)
                return r;
        if (seq != d->diskseq)
                return 0;

        r = loop_device_read_backing_file(d->nr, &backing);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        return 1;
}

int loop_device_find_attached(int nr, uint64_t diskseq, LoopDevice *ret) {
        _cleanup_(freep) char *dev = NULL;
        LoopDevice d = { .nr = nr, .diskseq = diskseq };
        char p[128];
        int r;

        r = loop_device_is_bound(&d);
        if (r <= 0)
                return r < 0 ? r : -ENXIO;

        r = loop_sysfs_path(p, sizeof(p), nr, "dev");
        if (r < 0)
                return r;
        r = read_one_line_file(p, &dev);
        if (r < 0)
                return r;
        r = parse_devnum(dev, &d.devnum);
        if (r < 0)
                return r;
        *ret = d;
        return 0;
}

static void sleep_backoff(unsigned attempt) {
        /* 1 ms doubling up to 64 ms; runs on workers only. */
        unsigned ms = 1u << MIN(attempt, 6u);
        struct timespec ts = { .tv_sec = 0, .tv_nsec = (long) ms * 1000000L };

        (void) nanosleep(&ts, NULL);
}

static int open_loop_nr(int nr, int flags) {
        char node[64];

        (void) snprintf(node, sizeof(node), "/dev/loop%i", nr);
        return open(node, flags | O_CLOEXEC | O_NOCTTY);
}

/* Opens /dev/loopN and checks, with the fd held (which keeps the instance from being rebound),
 * that it is still the instance d. Returns the fd, -ESTALE if not ours any more, or -errno. */
static int open_loop_instance(const LoopDevice *d) {
        _cleanup_(closep) int fd = -EBADF;
        uint64_t seq;
        int r;

        fd = open_loop_nr(d->nr, O_RDONLY);
        if (fd < 0)
                return errno == ENOENT || errno == ENXIO ? -ESTALE : -errno;

        r = loop_read_diskseq(d->nr, &seq);
        if (r < 0)
                return r == -ENOENT ? -ESTALE : r;
        if (seq != d->diskseq)
                return -ESTALE;

        return TAKE_FD(fd);
}

/* Whether the sysfs attribute attr of loop device nr holds want: 0, mismatch (an error of the
 * device's configuration), or -errno. */
static int loop_sysfs_expect(int nr, const char *attr, uint64_t want, int mismatch) {
        char p[128];
        uint64_t v;
        int r;

        (void) loop_sysfs_path(p, sizeof(p), nr, attr);
        r = read_u64_file(p, &v);
        if (r < 0)
                return r;
        return v == want ? 0 : mismatch;
}

static int loop_device_verify(int nr, const char *backing_path, uint32_t block_size, uint64_t offset,
                              uint64_t size_limit) {
        _cleanup_(freep) char *backing = NULL;
        int r;

        r = loop_device_read_backing_file(nr, &backing);
        if (r < 0)
                return r;
        if (strcmp(backing, backing_path) != 0)
                return -EBUSY;  /* someone else's file: we lost a race we should not lose */

        r = loop_sysfs_expect(nr, "ro", 1, -EROFS);
        if (r >= 0)
                r = loop_sysfs_expect(nr, "queue/logical_block_size", block_size, -EINVAL);
        if (r >= 0)
                r = loop_sysfs_expect(nr, "loop/offset", offset, -EINVAL);
        if (r >= 0)
                r = loop_sysfs_expect(nr, "loop/sizelimit", size_limit, -EINVAL);
        return r;
}

int loop_device_attach(const char *backing_path, uint32_t block_size, bool direct_io, uint64_t offset,
                       uint64_t size_limit, LoopDevice *ret, uint64_t *ret_seqnum) {
        _cleanup_(closep) int backing = -EBADF, ctl = -EBADF;
        struct loop_config cfg;
        int r;

        /* Runs on a worker: the open is answered by our own FUSE session on the loop thread. */
        backing = open(backing_path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (backing < 0)
                return log_debug_errno(errno, "Failed to open '%s': %m", backing_path);

        ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC | O_NOCTTY);
        if (ctl < 0)
                return log_debug_errno(errno, "Failed to open /dev/loop-control: %m");

        /* LOOP_CTL_GET_FREE is a hint, not a reservation: serialise with other users that lock
         * loop-control, and retry when someone else took the device between hint and use. A
         * holder that never lets go must not keep this job forever. */
        for (unsigned attempt = 0;; attempt++) {
                if (flock(ctl, LOCK_EX | LOCK_NB) >= 0)
                        break;
                if (errno != EWOULDBLOCK && errno != EINTR)
                        return -errno;
                if (attempt >= LOCK_ATTEMPTS)
                        return log_debug_errno(EBUSY, "/dev/loop-control stays locked by someone else");
                sleep_backoff(attempt);
        }

        cfg = (struct loop_config) {
                .fd = (uint32_t) backing,
                .block_size = block_size,
                .info.lo_flags = LO_FLAGS_READ_ONLY | (direct_io ? LO_FLAGS_DIRECT_IO : 0),
                .info.lo_offset = offset,
                .info.lo_sizelimit = size_limit,
        };
        (void) snprintf((char *) cfg.info.lo_file_name, sizeof(cfg.info.lo_file_name), "%s", backing_path);

        for (unsigned attempt = 0;; attempt++) {
                _cleanup_(closep) int fd = -EBADF;
                BlockStat st = {};
                uint64_t seqnum = 0;
                int nr;

                if (attempt >= ATTACH_ATTEMPTS)
                        return -EBUSY;

                nr = ioctl(ctl, LOOP_CTL_GET_FREE);
                if (nr < 0)
                        return errno == ENOSPC || errno == ENODEV ? -EBUSY : -errno;

                fd = open_loop_nr(nr, O_RDONLY);
                if (fd < 0) {
                        if (errno == ENOENT || errno == ENXIO || errno == EBUSY) {
                                sleep_backoff(attempt);
                                continue;
                        }
                        return -errno;
                }

                (void) uevent_seqnum_read(&seqnum);
                /* Nobody reads an unbound loop device: what it counts now belongs to earlier
                 * attachments. */
                (void) block_stat_read_loop(nr, &st);

                if (ioctl(fd, LOOP_CONFIGURE, &cfg) < 0) {
                        if (errno == EBUSY) {
                                sleep_backoff(attempt);
                                continue;
                        }
                        return log_debug_errno(errno, "LOOP_CONFIGURE on loop%i failed: %m", nr);
                }

                r = loop_device_verify(nr, backing_path, block_size, offset, size_limit);
                if (r >= 0) {
                        char p[128];

                        ret->nr = nr;
                        ret->read_ios_base = st.read_ios;
                        ret->read_sectors_base = st.read_sectors;
                        r = loop_read_diskseq(nr, &ret->diskseq);
                        if (r >= 0) {
                                _cleanup_(freep) char *s = NULL;

                                (void) loop_sysfs_path(p, sizeof(p), nr, "dev");
                                r = read_one_line_file(p, &s);
                                if (r >= 0)
                                        r = parse_devnum(s, &ret->devnum);
                        }
                }
                if (r < 0) {
                        /* We did bind this one (LOOP_CONFIGURE succeeded on our fd): undo it. */
                        (void) ioctl(fd, LOOP_CLR_FD);
                        return log_debug_errno(r, "loop%i did not take the configuration: %m", nr);
                }

                *ret_seqnum = seqnum;
                return 0;
        }
}

/* Adds the partitions libblkid finds on the disk behind fd with BLKPG, as partx does. Returns the
 * number added or -errno. */
static int loop_device_add_partitions(int fd) {
        blkid_probe pr;
        blkid_partlist list;
        int n, added = 0, r = 0;

        pr = blkid_new_probe();
        if (!pr)
                return -ENOMEM;

        if (blkid_probe_set_device(pr, fd, 0, 0) < 0 || blkid_probe_enable_partitions(pr, true) < 0) {
                r = -EIO;
                goto finish;
        }

        list = blkid_probe_get_partitions(pr);
        if (!list)
                goto finish;  /* no partition table */

        n = blkid_partlist_numof_partitions(list);
        for (int i = 0; i < n; i++) {
                blkid_partition par = blkid_partlist_get_partition(list, i);
                struct blkpg_partition part;
                struct blkpg_ioctl_arg arg;

                /* An extended partition only holds logical ones; those are added themselves. */
                if (!par || blkid_partition_is_extended(par))
                        continue;

                part = (struct blkpg_partition) {
                        .start = (long long) blkid_partition_get_start(par) * 512,
                        .length = (long long) blkid_partition_get_size(par) * 512,
                        .pno = blkid_partition_get_partno(par),
                };
                arg = (struct blkpg_ioctl_arg) {
                        .op = BLKPG_ADD_PARTITION,
                        .datalen = sizeof(part),
                        .data = &part,
                };
                if (ioctl(fd, BLKPG, &arg) < 0) {
                        if (errno == EBUSY)
                                continue;  /* the kernel found it already */
                        r = log_debug_errno(errno, "Failed to add partition %i: %m", part.pno);
                        goto finish;
                }
                added++;
        }
        r = added;

finish:
        blkid_free_probe(pr);
        return r;
}

int loop_device_enable_partscan(const LoopDevice *d, uint64_t *ret_seqnum) {
        _cleanup_(freep) LoopPartition *parts = NULL;
        _cleanup_(closep) int fd = -EBADF;
        struct loop_info64 info;
        uint64_t seqnum = 0;
        int r;

        /* Runs on a worker: LOOP_GET_STATUS64 calls getattr on our FUSE file, and the partition
         * table is read through it. */
        fd = open_loop_instance(d);
        if (fd < 0)
                return fd;

        if (ioctl(fd, LOOP_GET_STATUS64, &info) < 0)
                return -errno;

        info.lo_flags |= LO_FLAGS_PARTSCAN;
        (void) uevent_seqnum_read(&seqnum);

        if (ioctl(fd, LOOP_SET_STATUS64, &info) < 0)
                return -errno;

        /* A kernel built without partition table parsers (CONFIG_*_PARTITION unset, as on our CI
         * machines with 6.18) scans and finds nothing: then read the table in user space. */
        r = loop_device_list_partitions(d, &parts);
        if (r == 0)
                r = loop_device_add_partitions(fd);
        if (r < 0)
                return r;

        *ret_seqnum = seqnum;
        return 0;
}

static int loop_device_check_exclusive(const LoopDevice *d) {
        _cleanup_(freep) LoopPartition *parts = NULL;
        _cleanup_(closep) int fd = -EBADF;
        int n;

        /* An exclusive open fails with EBUSY while a file system (or anything else that claims
         * the device) holds the disk or one of its partitions. */
        fd = open_loop_nr(d->nr, O_RDONLY | O_EXCL);
        if (fd < 0)
                return errno == EBUSY ? -EBUSY : 0;
        fd = safe_close(fd);

        n = loop_device_list_partitions(d, &parts);
        for (int i = 0; i < n; i++) {
                char node[64];

                (void) snprintf(node, sizeof(node), "/dev/loop%ip%u", d->nr, parts[i].partno);
                fd = open(node, O_RDONLY | O_EXCL | O_CLOEXEC | O_NOCTTY);
                if (fd < 0 && errno == EBUSY)
                        return -EBUSY;
                fd = safe_close(fd);
        }
        return 0;
}

int loop_device_detach(const LoopDevice *d, bool lazy) {
        _cleanup_(freep) char *backing = NULL;
        _cleanup_(closep) int fd = -EBADF;
        int r;

        /* Runs on a worker: LOOP_CLR_FD and the last close release our FUSE file. */
        if (!lazy) {
                r = loop_device_check_exclusive(d);
                if (r < 0)
                        return r;
        }

        fd = open_loop_instance(d);
        if (fd == -ESTALE)
                return 0;
        if (fd < 0)
                return fd;

        if (ioctl(fd, LOOP_CLR_FD) < 0 && errno != ENXIO)
                return -errno;

        /* With us as the only opener the kernel detaches at our close; otherwise it only sets
         * autoclear and detaches at the last close. */
        fd = safe_close(fd);

        r = loop_device_read_backing_file(d->nr, &backing);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        return 1;
}

int loop_device_cancel_autoclear(const LoopDevice *d) {
        _cleanup_(closep) int fd = -EBADF;
        struct loop_info64 info;

        fd = open_loop_instance(d);
        if (fd < 0)
                return fd;

        if (ioctl(fd, LOOP_GET_STATUS64, &info) < 0)
                return -errno;
        if (!(info.lo_flags & LO_FLAGS_AUTOCLEAR))
                return 0;

        info.lo_flags &= ~LO_FLAGS_AUTOCLEAR;
        if (ioctl(fd, LOOP_SET_STATUS64, &info) < 0)
                return -errno;
        return 0;
}

int loop_device_list_partitions(const LoopDevice *d, LoopPartition **ret) {
        _cleanup_(freep) LoopPartition *list = NULL;
        char disk[32], dir[64];
        size_t n = 0, allocated = 0;
        DIR *dp;
        struct dirent *de;

        (void) snprintf(disk, sizeof(disk), "loop%i", d->nr);
        (void) snprintf(dir, sizeof(dir), "/sys/block/%s", disk);

        dp = opendir(dir);
        if (!dp)
                return -errno;

        while ((de = readdir(dp))) {
                _cleanup_(freep) char *s = NULL;
                char p[PATH_MAX];
                unsigned partno;
                dev_t devnum;

                if (!sysfs_partition_name_parse(disk, de->d_name, &partno))
                        continue;

                (void) snprintf(p, sizeof(p), "%s/%s/dev", dir, de->d_name);
                if (read_one_line_file(p, &s) < 0 || parse_devnum(s, &devnum) < 0)
                        continue;

                if (n >= allocated) {
                        size_t a = MAX(allocated * 2, (size_t) 8);
                        LoopPartition *l = realloc(list, a * sizeof(LoopPartition));

                        if (!l) {
                                closedir(dp);
                                return -ENOMEM;
                        }
                        list = l;
                        allocated = a;
                }
                list[n++] = (LoopPartition) { .partno = partno, .devnum = devnum };
        }
        closedir(dp);

        *ret = TAKE_PTR(list);
        return (int) n;
}

static bool access_loop_bound(int nr) {
        char p[128];

        (void) loop_sysfs_path(p, sizeof(p), nr, "loop/backing_file");
        return access(p, F_OK) >= 0;
}

static bool path_is_under(const char *path, const char *dir, size_t dlen) {
        return strncmp(path, dir, dlen) == 0 && path[dlen] == '/';
}

/* One of the devices a resumed mapping serves (the same number and attachment). */
static bool loop_device_is_kept(int nr, const LoopDevice *keep, size_t n_keep) {
        uint64_t seq;

        for (size_t i = 0; i < n_keep; i++)
                if (keep[i].nr == nr)
                        return loop_read_diskseq(nr, &seq) < 0 || seq == keep[i].diskseq;
        return false;
}

int loop_device_detach_all_under(const char *dir, const LoopDevice *keep, size_t n_keep) {
        size_t dlen = strlen(dir);
        struct dirent *de;
        int count = 0;
        DIR *dp;

        dp = opendir("/sys/block");
        if (!dp)
                return -errno;

        while ((de = readdir(dp))) {
                _cleanup_(freep) char *backing = NULL;
                _cleanup_(closep) int fd = -EBADF;
                int nr;

                nr = loop_device_parse_number(de->d_name);
                if (nr < 0 || loop_device_is_kept(nr, keep, n_keep))
                        continue;
                if (loop_device_read_backing_file(nr, &backing) < 0)
                        continue;
                if (!path_is_under(backing, dir, dlen)) {
                        /* An instance that ran in a mount namespace of its own (the systemd unit
                         * gives it one) took its FUSE mounts along when it died: the kernel then
                         * names the backing file "/". The file name we gave LOOP_CONFIGURE still
                         * says whose it is. */
                        struct loop_info64 info = {};

                        if (!streq(backing, "/"))
                                continue;
                        fd = open_loop_nr(nr, O_RDONLY);
                        if (fd < 0 || ioctl(fd, LOOP_GET_STATUS64, &info) < 0)
                                continue;
                        info.lo_file_name[sizeof(info.lo_file_name) - 1] = 0;
                        if (!path_is_under((const char *) info.lo_file_name, dir, dlen))
                                continue;
                        free(backing);
                        backing = strdup((const char *) info.lo_file_name);
                        if (!backing) {
                                closedir(dp);
                                return -ENOMEM;
                        }
                }

                if (fd < 0)
                        fd = open_loop_nr(nr, O_RDONLY);
                if (fd < 0) {
                        log_warning_errno(errno, "Failed to open leftover loop%i ('%s'): %m, ignoring", nr, backing);
                        continue;
                }
                if (ioctl(fd, LOOP_CLR_FD) < 0 && errno != ENXIO) {
                        log_warning_errno(errno, "Failed to detach leftover loop%i ('%s'): %m, ignoring", nr, backing);
                        continue;
                }
                fd = safe_close(fd);

                if (access_loop_bound(nr))
                        log_warning("Leftover /dev/loop%i of '%s' is still in use; it detaches when its last user closes it.",
                                    nr, backing);
                else
                        log_notice("Detached leftover /dev/loop%i of an earlier instance.", nr);
                count++;
        }
        closedir(dp);
        return count;
}
