/* errfs: a FUSE file system of the tests with one file, "data", whose content comes from a
 * backing file but whose reads misbehave in given byte ranges. It gives the daemon a real source
 * that fails or stalls, on a real file system.
 *
 *   errfs BACKING BAD_OFFSET BAD_LENGTH MOUNTPOINT [STALL_OFFSET STALL_LENGTH GATE]
 *
 * A read that touches [BAD_OFFSET, BAD_OFFSET + BAD_LENGTH) fails with EIO (BAD_LENGTH 0: none
 * does). A read that touches [STALL_OFFSET, STALL_OFFSET + STALL_LENGTH) waits as long as the file
 * GATE exists, then goes on like any other read: create GATE before, remove it to release the
 * reads. Each such read prints "stall OFFSET LENGTH" on stdout when it starts to wait and
 * "release OFFSET LENGTH" when it goes on, so a test can wait for a read to be held. Reads run on
 * threads of their own (up to 64), so a held read never delays the others. errfs stays in the
 * foreground; SIGTERM ends it, and reads still held then fail with EIO. */
#define FUSE_USE_VERSION 312

#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <fuse_lowlevel.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* How often a held read looks at the gate and at whether errfs is ending. */
#define GATE_POLL_NSEC (10 * 1000 * 1000)

static int backing_fd = -1;
static off_t backing_size;
static uint64_t bad_offset, bad_length;
static uint64_t stall_offset, stall_length;
static const char *gate;

static int errfs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi) {
        (void) fi;
        memset(st, 0, sizeof(*st));
        if (strcmp(path, "/") == 0) {
                st->st_mode = S_IFDIR | 0755;
                st->st_nlink = 2;
                return 0;
        }
        if (strcmp(path, "/data") == 0) {
                st->st_mode = S_IFREG | 0444;
                st->st_nlink = 1;
                st->st_size = backing_size;
                return 0;
        }
        return -ENOENT;
}

static int errfs_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
                         struct fuse_file_info *fi, enum fuse_readdir_flags flags) {
        (void) off;
        (void) fi;
        (void) flags;
        if (strcmp(path, "/") != 0)
                return -ENOENT;
        fill(buf, ".", NULL, 0, 0);
        fill(buf, "..", NULL, 0, 0);
        fill(buf, "data", NULL, 0, 0);
        return 0;
}

static int errfs_open(const char *path, struct fuse_file_info *fi) {
        if (strcmp(path, "/data") != 0)
                return -ENOENT;
        if ((fi->flags & O_ACCMODE) != O_RDONLY)
                return -EROFS;
        /* No page cache here: every read of the daemon reaches us, so the failure is real each
         * time. */
        fi->direct_io = 1;
        return 0;
}

static int touches(off_t off, size_t size, uint64_t start, uint64_t length) {
        return length > 0 && (uint64_t) off < start + length && (uint64_t) off + size > start;
}

static void say(const char *what, off_t off, size_t size) {
        flockfile(stdout);
        printf("%s %" PRIu64 " %zu\n", what, (uint64_t) off, size);
        fflush(stdout);
        funlockfile(stdout);
}

/* Holds the calling read while the gate exists. Returns 0 once it is gone, -EIO if errfs is
 * ending (the loop waits for every thread, so a held read must give up then). */
static int wait_for_gate(off_t off, size_t size) {
        struct fuse_session *se = fuse_get_session(fuse_get_context()->fuse);
        const struct timespec poll = { .tv_nsec = GATE_POLL_NSEC };

        if (access(gate, F_OK) < 0)
                return 0;
        say("stall", off, size);
        while (access(gate, F_OK) == 0) {
                if (fuse_session_exited(se))
                        return -EIO;
                (void) nanosleep(&poll, NULL);
        }
        say("release", off, size);
        return 0;
}

static int errfs_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
        ssize_t n;
        int r;

        (void) path;
        (void) fi;
        if (gate && touches(off, size, stall_offset, stall_length)) {
                r = wait_for_gate(off, size);
                if (r < 0)
                        return r;
        }
        if (touches(off, size, bad_offset, bad_length))
                return -EIO;
        n = pread(backing_fd, buf, size, off);
        return n < 0 ? -errno : (int) n;
}

static const struct fuse_operations errfs_ops = {
        .getattr = errfs_getattr,
        .readdir = errfs_readdir,
        .open = errfs_open,
        .read = errfs_read,
};

int main(int argc, char *argv[]) {
        struct stat st;
        /* Multithreaded, so that a held read takes one thread and the others go on. max_idle_threads
         * is given because libfuse 3.14 warns about its own default otherwise. */
        char *fargv[] = { argv[0], "-f", "-o", "ro,allow_other,max_threads=64,max_idle_threads=8", argv[4],
                          NULL };

        if (argc != 5 && argc != 8) {
                fprintf(stderr, "usage: %s BACKING BAD_OFFSET BAD_LENGTH MOUNTPOINT "
                        "[STALL_OFFSET STALL_LENGTH GATE]\n", argv[0]);
                return 2;
        }
        backing_fd = open(argv[1], O_RDONLY | O_CLOEXEC);
        if (backing_fd < 0 || fstat(backing_fd, &st) < 0) {
                perror(argv[1]);
                return 1;
        }
        backing_size = st.st_size;
        bad_offset = strtoull(argv[2], NULL, 0);
        bad_length = strtoull(argv[3], NULL, 0);
        if (argc == 8) {
                stall_offset = strtoull(argv[5], NULL, 0);
                stall_length = strtoull(argv[6], NULL, 0);
                gate = argv[7];
        }

        return fuse_main(5, fargv, &errfs_ops, NULL);
}
