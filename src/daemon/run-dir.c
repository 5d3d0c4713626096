/* The run directory: where each mapping's FUSE file lives, and what an earlier instance left.
 *
 * The clean-up runs at start-up on a worker, while the mappings resumed from the fd store are
 * already served from the event loop: it leaves those alone (their run files, mounts and loop
 * devices are named in the keep lists) and removes everything else. The sessions it finds
 * belong to a dead process (their connections are aborted) and the unmounts are lazy. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "loop-device.h"
#include "macro.h"
#include "run-dir.h"
#include "util.h"

/* How long a new instance waits for an earlier one that is exiting. */
#define RUN_DIR_LOCK_WAIT_MSEC 5000

int run_dir_prepare(const char *dir) {
        _cleanup_(closep) int fd = -EBADF;
        struct stat st;

        /* 0700: the FUSE files serve whatever was mapped, so only root may reach them (the loop
         * devices themselves are root:disk). */
        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                return log_error_errno(errno, "Failed to create the run directory '%s': %m", dir);

        fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return log_error_errno(errno, "Failed to open the run directory '%s': %m", dir);
        if (fstat(fd, &st) < 0)
                return log_error_errno(errno, "Failed to stat the run directory '%s': %m", dir);
        if (st.st_uid != 0)
                return log_error_errno(EPERM, "The run directory '%s' is not owned by root, refusing to use it.", dir);
        if ((st.st_mode & 07777) != 0700 && fchmod(fd, 0700) < 0)
                return log_error_errno(errno, "Failed to restrict the run directory '%s': %m", dir);
        return 0;
}

int run_dir_lock(const char *dir) {
        _cleanup_(closep) int fd = -EBADF;

        fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return log_error_errno(errno, "Failed to open the run directory '%s': %m", dir);

        /* An instance that exits for idleness has released the bus name already and is about to
         * go; give it a moment rather than failing the activation that started us. */
        for (unsigned i = 0; flock(fd, LOCK_EX | LOCK_NB) < 0; i++) {
                struct timespec ts = { .tv_nsec = 100 * 1000 * 1000 };

                if (errno != EWOULDBLOCK)
                        return log_error_errno(errno, "Failed to lock the run directory '%s': %m", dir);
                if (i == 0)
                        log_info("Another fuseloopd uses the run directory '%s'; waiting for it to exit.", dir);
                if (i >= RUN_DIR_LOCK_WAIT_MSEC / 100)
                        return log_error_errno(EBUSY, "Another fuseloopd uses the run directory '%s': is fuseloopd "
                                               "running already?", dir);
                (void) nanosleep(&ts, NULL);
        }
        return TAKE_FD(fd);
}

/* Decodes the octal escapes (\040 etc.) of /proc/self/mountinfo in place. */
static void mountinfo_unescape(char *s) {
        char *o = s;

        for (; *s; s++) {
                if (s[0] == '\\' && s[1] >= '0' && s[1] <= '7' && s[2] >= '0' && s[2] <= '7' && s[3] >= '0' &&
                    s[3] <= '7') {
                        *o++ = (char) (((s[1] - '0') << 6) | ((s[2] - '0') << 3) | (s[3] - '0'));
                        s += 3;
                } else
                        *o++ = *s;
        }
        *o = '\0';
}

/* Whether name is the run file of a kept mapping, or its udev file. */
static bool name_is_kept(const char *name, char *const *keep) {
        for (; keep && *keep; keep++) {
                const char *rest = startswith(name, *keep);

                if (rest && (streq(rest, "") || streq(rest, RUN_DIR_UDEV_SUFFIX)))
                        return true;
        }
        return false;
}

/* Unmounts (lazily) every mount whose mount point is directly in dir, but for the names in keep;
 * repeats for stacked mounts. Returns the number of unmounts. */
static int unmount_all_in(const char *dir, char *const *keep) {
        size_t dlen = strlen(dir);
        int count = 0;

        for (unsigned round = 0; round < 16; round++) {
                _cleanup_(freep) char *line = NULL;
                size_t linelen = 0;
                bool found = false;
                FILE *f;

                f = fopen("/proc/self/mountinfo", "re");
                if (!f)
                        return -errno;

                while (getline(&line, &linelen, f) > 0) {
                        char mnt[PATH_MAX];

                        /* id parent maj:min root mountpoint ... */
                        if (sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1)
                                continue;
                        mountinfo_unescape(mnt);
                        if (strncmp(mnt, dir, dlen) != 0 || mnt[dlen] != '/' || strchr(mnt + dlen + 1, '/') ||
                            name_is_kept(mnt + dlen + 1, keep))
                                continue;

                        if (umount2(mnt, MNT_DETACH | UMOUNT_NOFOLLOW) < 0) {
                                log_warning_errno(errno, "Failed to unmount leftover '%s': %m, ignoring", mnt);
                                continue;
                        }
                        log_notice("Unmounted leftover FUSE file '%s' of an earlier instance.", mnt);
                        found = true;
                        count++;
                }
                fclose(f);

                if (!found)
                        break;
        }
        return count;
}

static int remove_files_in(const char *dir, char *const *keep) {
        struct dirent *de;
        int count = 0;
        DIR *d;

        d = opendir(dir);
        if (!d)
                return -errno;

        while ((de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, "..") || name_is_kept(de->d_name, keep))
                        continue;
                if (unlinkat(dirfd(d), de->d_name, 0) < 0) {
                        log_warning_errno(errno, "Failed to remove leftover '%s/%s': %m, ignoring", dir, de->d_name);
                        continue;
                }
                log_notice("Removed leftover run file '%s/%s'.", dir, de->d_name);
                count++;
        }
        closedir(d);
        return count;
}

int run_dir_cleanup(const char *dir, const LoopDevice *keep_loops, size_t n_keep_loops, char *const *keep_names) {
        int r, count = 0;

        r = loop_device_detach_all_under(dir, keep_loops, n_keep_loops);
        if (r < 0)
                log_warning_errno(r, "Failed to look for leftover loop devices: %m, ignoring");
        else
                count += r;

        r = unmount_all_in(dir, keep_names);
        if (r < 0)
                log_warning_errno(r, "Failed to look for leftover FUSE mounts: %m, ignoring");
        else
                count += r;

        r = remove_files_in(dir, keep_names);
        if (r < 0)
                log_warning_errno(r, "Failed to look for leftover run files: %m, ignoring");
        else
                count += r;

        if (count > 0)
                log_notice("Cleaned up %i leftovers of an earlier instance in '%s'.", count, dir);
        return count;
}

/* Appends a value for udev's import file: it strips blanks around values and knows no quoting
 * inside them, so blanks, quotes, backslashes and control bytes are written as \xNN, the way
 * udev encodes such values itself (ID_FS_LABEL_ENC). */
static void fput_udev_value(FILE *f, const char *s) {
        for (const unsigned char *p = (const unsigned char *) s; *p; p++)
                if (*p <= ' ' || *p == 0x7f || *p == '\\' || *p == '"' || *p == '\'')
                        (void) fprintf(f, "\\x%02x", *p);
                else
                        (void) fputc(*p, f);
}

static int udev_info_path(const char *run_file, char *buf, size_t len) {
        if ((size_t) snprintf(buf, len, "%s" RUN_DIR_UDEV_SUFFIX, run_file) >= len)
                return -ENAMETOOLONG;
        return 0;
}

int run_dir_write_udev_info(const char *run_file, const char *name, const char *source, bool untrusted) {
        char path[PATH_MAX];
        FILE *f;
        int fd, r;

        r = udev_info_path(run_file, path, sizeof(path));
        if (r < 0)
                return r;

        /* Runs on a worker. Only root can write in the run directory; O_NOFOLLOW all the same. */
        fd = open(path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0444);
        if (fd < 0)
                return -errno;
        f = fdopen(fd, "w");
        if (!f) {
                r = -errno;
                (void) close(fd);
                return r;
        }

        (void) fputs("FUSELOOP_NAME=", f);
        fput_udev_value(f, name);
        (void) fputs("\nFUSELOOP_SOURCE=", f);
        fput_udev_value(f, source ?: "");
        (void) fputc('\n', f);
        if (untrusted)
                (void) fputs("FUSELOOP_UNTRUSTED=1\n", f);

        r = ferror(f) ? -EIO : 0;
        if (fclose(f) != 0 && r == 0)
                r = -errno;
        if (r < 0)
                (void) unlink(path);
        return r;
}

int run_dir_remove_udev_info(const char *run_file) {
        char path[PATH_MAX];
        int r;

        r = udev_info_path(run_file, path, sizeof(path));
        if (r < 0)
                return r;
        if (unlink(path) < 0 && errno != ENOENT)
                return -errno;
        return 0;
}
