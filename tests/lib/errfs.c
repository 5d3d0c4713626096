/* errfs: a FUSE file system of the tests with one file, "data", whose content comes from a
 * backing file but whose reads fail with EIO wherever they touch a given byte range. It gives
 * the daemon a real source that fails, on a real file system.
 *
 *   errfs BACKING BAD_OFFSET BAD_LENGTH MOUNTPOINT   (stays in the foreground; SIGTERM ends it)
 */
#define FUSE_USE_VERSION 312

#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int backing_fd = -1;
static off_t backing_size;
static uint64_t bad_offset, bad_length;

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

static int errfs_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
        ssize_t n;

        (void) path;
        (void) fi;
        if ((uint64_t) off < bad_offset + bad_length && (uint64_t) off + size > bad_offset)
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
        char *fargv[] = { argv[0], "-f", "-s", "-o", "ro,allow_other", argv[4], NULL };

        if (argc != 5) {
                fprintf(stderr, "usage: %s BACKING BAD_OFFSET BAD_LENGTH MOUNTPOINT\n", argv[0]);
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

        return fuse_main(6, fargv, &errfs_ops, NULL);
}
