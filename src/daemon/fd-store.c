/* The service manager's file descriptor store: see fd-store.h. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "fd-store.h"
#include "log.h"
#include "macro.h"
#include "util.h"

#define FD_NAME_PREFIX "fuseloop-"

static const char *const kind_names[_FD_STORE_KIND_MAX] = {
        [FD_STORE_FUSE] = "fuse",
        [FD_STORE_SOURCE] = "source",
        [FD_STORE_RECORD] = "record",
};

const char *fd_store_kind_to_string(FdStoreKind k) {
        return k >= 0 && k < _FD_STORE_KIND_MAX ? kind_names[k] : NULL;
}

bool fd_store_available(void) {
        return !isempty(getenv("NOTIFY_SOCKET"));
}

static void fd_name(char *buf, size_t len, uint64_t diskseq, FdStoreKind kind) {
        (void) snprintf(buf, len, FD_NAME_PREFIX "%" PRIu64 "-%s", diskseq, kind_names[kind]);
}

static int fd_store_put(uint64_t diskseq, FdStoreKind kind, int fd) {
        char name[64], msg[96];
        int r;

        fd_name(name, sizeof(name), diskseq, kind);
        (void) snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=%s", name);
        r = sd_pid_notify_with_fds(0, false, msg, &fd, 1);
        return r < 0 ? r : 0;
}

static int record_memfd(const RestartRecord *record) {
        _cleanup_(freep) char *text = NULL;
        _cleanup_(closep) int fd = -EBADF;
        size_t len, done = 0;
        int r;

        r = restart_record_format(record, &text, &len);
        if (r < 0)
                return r;

        fd = memfd_create("fuseloop-restart-record", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd < 0)
                return -errno;
        while (done < len) {
                ssize_t n = write(fd, text + done, len - done);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                done += (size_t) n;
        }
        /* Sealed: what the next daemon reads is exactly what this one wrote. */
        if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0)
                return -errno;
        return TAKE_FD(fd);
}

int fd_store_put_mapping(uint64_t diskseq, int fuse_fd, int source_fd, const RestartRecord *record) {
        _cleanup_(closep) int rfd = -EBADF;
        int r;

        if (!fd_store_available())
                return 1;

        rfd = record_memfd(record);
        if (rfd < 0)
                return rfd;

        /* The record goes last: a record in the store means the other two are there as well. */
        r = fd_store_put(diskseq, FD_STORE_FUSE, fuse_fd);
        if (r >= 0)
                r = fd_store_put(diskseq, FD_STORE_SOURCE, source_fd);
        if (r >= 0)
                r = fd_store_put(diskseq, FD_STORE_RECORD, rfd);
        if (r < 0) {
                fd_store_remove_mapping(diskseq);
                return r;
        }
        return 0;
}

void fd_store_remove_mapping(uint64_t diskseq) {
        if (!fd_store_available())
                return;

        for (FdStoreKind k = 0; k < _FD_STORE_KIND_MAX; k++) {
                char name[64];
                int r;

                fd_name(name, sizeof(name), diskseq, k);
                r = sd_notifyf(false, "FDSTOREREMOVE=1\nFDNAME=%s", name);
                if (r < 0)
                        log_warning_errno(r, "Failed to remove '%s' from the fd store: %m, ignoring", name);
        }
}

/* "fuseloop-<diskseq>-<kind>" */
static int parse_fd_name(const char *name, uint64_t *ret_diskseq, FdStoreKind *ret_kind) {
        const char *p = startswith(name, FD_NAME_PREFIX), *dash;
        char digits[24];
        size_t n;

        if (!p)
                return -EINVAL;
        dash = strchr(p, '-');
        if (!dash)
                return -EINVAL;
        n = (size_t) (dash - p);
        if (n == 0 || n >= sizeof(digits))
                return -EINVAL;
        memcpy(digits, p, n);
        digits[n] = '\0';
        if (safe_atou64(digits, ret_diskseq) < 0 || *ret_diskseq == 0)
                return -EINVAL;
        for (FdStoreKind k = 0; k < _FD_STORE_KIND_MAX; k++)
                if (streq(dash + 1, kind_names[k])) {
                        *ret_kind = k;
                        return 0;
                }
        return -EINVAL;
}

void stored_mapping_close(StoredMapping *s) {
        for (FdStoreKind k = 0; k < _FD_STORE_KIND_MAX; k++)
                s->fds[k] = safe_close(s->fds[k]);
}

int fd_store_take(StoredMapping **ret) {
        _cleanup_(freep) StoredMapping *list = NULL;
        char **names = NULL;
        size_t n_list = 0;
        int n, r = 0;

        n = sd_listen_fds_with_names(true, &names);
        if (n <= 0) {
                *ret = NULL;
                return n;
        }

        list = calloc((size_t) n, sizeof(*list));
        if (!list) {
                r = -ENOMEM;
                goto finish;
        }

        for (int i = 0; i < n; i++) {
                int fd = SD_LISTEN_FDS_START + i;
                const char *name = names && names[i] ? names[i] : "";
                StoredMapping *s = NULL;
                uint64_t diskseq;
                FdStoreKind kind;

                (void) fcntl(fd, F_SETFD, FD_CLOEXEC);
                if (parse_fd_name(name, &diskseq, &kind) < 0) {
                        /* Not from this daemon (another version, or put there by hand): out of
                         * the store, or it would come back at every start. */
                        log_warning("Closing fd %i ('%s') passed by the service manager: not one of ours.", fd, name);
                        (void) close(fd);
                        if (!isempty(name))
                                (void) sd_notifyf(false, "FDSTOREREMOVE=1\nFDNAME=%s", name);
                        continue;
                }
                for (size_t j = 0; j < n_list && !s; j++)
                        if (list[j].diskseq == diskseq)
                                s = &list[j];
                if (!s) {
                        s = &list[n_list++];
                        *s = (StoredMapping) { .diskseq = diskseq };
                        for (FdStoreKind k = 0; k < _FD_STORE_KIND_MAX; k++)
                                s->fds[k] = -EBADF;
                }
                if (s->fds[kind] >= 0) {
                        log_warning("Closing fd %i: a second '%s' passed by the service manager.", fd, name);
                        (void) close(fd);
                        continue;
                }
                s->fds[kind] = fd;
        }

finish:
        for (int i = 0; names && names[i]; i++)
                free(names[i]);
        free(names);
        if (r < 0) {
                for (int i = 0; i < n; i++)
                        (void) close(SD_LISTEN_FDS_START + i);
                return r;
        }
        *ret = TAKE_PTR(list);
        return (int) n_list;
}

int fd_store_read_record(int fd, char **ret_text, size_t *ret_len) {
        _cleanup_(freep) char *buf = NULL;
        size_t len = 0;

        buf = malloc(RESTART_RECORD_MAX + 1);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                ssize_t n = pread(fd, buf + len, RESTART_RECORD_MAX + 1 - len, (off_t) len);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                len += (size_t) n;
                if (len > RESTART_RECORD_MAX)
                        return -EFBIG;
        }
        buf[len] = '\0';
        *ret_text = TAKE_PTR(buf);
        *ret_len = len;
        return 0;
}
