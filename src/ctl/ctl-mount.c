/* map --mount and unmap: mounting a mapping's partition read-only, and finding and unmounting that
 * mount again before the mapping goes. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctl.h"
#include "util.h"

/* Stacked mounts of the same device at one place are possible, but not many. */
#define UNMOUNT_MAX 16

int mount_device(const char *device, const char *dir) {
        const char *argv[] = { "mount", "-o", "ro", device, dir, NULL };
        int status;
        pid_t pid;

        /* mount(8) knows every file system type and its helpers, and says itself on stderr what
         * went wrong. */
        (void) fflush(stdout);
        pid = fork();
        if (pid < 0)
                return error_errno(errno, "failed to start mount: %m");
        if (pid == 0) {
                (void) execvp("mount", (char **) argv);
                (void) execv("/usr/bin/mount", (char **) argv);
                (void) execv("/bin/mount", (char **) argv);
                _exit(127);
        }

        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return error_errno(errno, "failed to wait for mount: %m");

        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
                return 0;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
                return error_errno(ENOENT, "failed to run mount(8): is util-linux' mount installed?");
        return error_errno(EIO, "failed to mount '%s' read-only at '%s' (mount exited with %i)", device, dir,
                           WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
}

/* Adds the "major:minor" of /sys/class/block/<name>/dev to set (n entries, at most max). */
static void devnum_add(const char *name, char set[][32], size_t *n, size_t max) {
        _cleanup_(freep) char *s = NULL;
        char path[128];

        if (*n >= max)
                return;
        (void) snprintf(path, sizeof(path), "/sys/class/block/%s/dev", name);
        if (read_one_line_file(path, &s) < 0 || strlen(s) >= 32)
                return;
        (void) strcpy(set[(*n)++], s);
}

/* Undoes the octal escapes (\040 for a space, \011, \012, \134) of a mountinfo field, in place. */
static void mountinfo_unescape(char *s) {
        char *w = s;

        for (const char *p = s; *p; p++)
                if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' && p[3] >= '0' &&
                    p[3] <= '7') {
                        *w++ = (char) ((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
                        p += 3;
                } else
                        *w++ = *p;
        *w = '\0';
}

/* Whether dir is a mount point (in our mount namespace) of one of the n devices in set. */
static int mounted_at(const char *dir, char set[][32], size_t n) {
        _cleanup_(freep) char *line = NULL;
        size_t len = 0;
        FILE *f;
        int found = 0;

        f = fopen("/proc/self/mountinfo", "re");
        if (!f)
                return -errno;

        /* "36 35 7:3 / /mnt/x rw,relatime shared:1 - ext4 /dev/loop3 ro" */
        while (!found && getline(&line, &len, f) > 0) {
                char devnum[32], mnt[4096 + 1];

                if (sscanf(line, "%*s %*s %31s %*s %4096s", devnum, mnt) != 2)
                        continue;
                mountinfo_unescape(mnt);
                if (!streq(mnt, dir))
                        continue;
                for (size_t i = 0; i < n; i++)
                        if (streq(devnum, set[i]))
                                found = 1;
        }

        (void) fclose(f);
        return found;
}

int unmount_mapping(const char *device, const char *dir, bool lazy) {
        _cleanup_(strv_freep) char **parts = NULL;
        char set[64][32];
        size_t n = 0;
        int r, k;

        if (!startswith(device, "/dev/"))
                return 0;

        r = device_partitions(device, &parts);
        if (r < 0)
                return error_errno(r, "out of memory");
        devnum_add(device + strlen("/dev/"), set, &n, ELEMENTSOF(set));
        for (char **p = parts; *p; p++)
                devnum_add(*p + strlen("/dev/"), set, &n, ELEMENTSOF(set));

        for (k = 0; k < UNMOUNT_MAX; k++) {
                r = mounted_at(dir, set, n);
                if (r < 0)
                        return error_errno(r, "failed to read /proc/self/mountinfo: %m");
                if (r == 0)
                        return k > 0;

                /* Lazily, the mount point goes at once and the file system when its last file
                 * is closed, like the device of a lazy unmap. */
                if (umount2(dir, UMOUNT_NOFOLLOW | (lazy ? MNT_DETACH : 0)) < 0) {
                        r = -errno;
                        if (r == -EBUSY) {
                                exit_code_set(EXIT_BUSY);
                                return error_errno(r, "'%s' is busy (a process uses a file there), so '%s' "
                                                   "stays mapped: %m", dir, device);
                        }
                        if (r == -EPERM)
                                exit_code_set(EXIT_DENIED);
                        return error_errno(r, "failed to unmount '%s': %m", dir);
                }
        }

        exit_code_set(EXIT_BUSY);
        return error_errno(EBUSY, "'%s' is still mounted after %i unmounts", dir, UNMOUNT_MAX);
}
