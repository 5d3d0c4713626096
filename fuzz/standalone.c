/* main() for fuzz targets built without libFuzzer (a compiler other than clang): runs
 * LLVMFuzzerTestOneInput() once on each file named on the command line, or on each file of a
 * named directory, so that the seed corpus and saved crashes replay as regression tests.
 * Arguments starting with '-' (libFuzzer options) are ignored. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

/* Reads the whole file; returns 0 and a malloc()ed buffer, or -errno. */
static int read_file(const char *path, uint8_t **ret, size_t *ret_size) {
        uint8_t *buf = NULL;
        size_t size = 0, allocated = 0;
        int fd;

        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;

        for (;;) {
                ssize_t n;

                if (size == allocated) {
                        size_t a = allocated ? allocated * 2 : 4096;
                        uint8_t *b = realloc(buf, a);

                        if (!b) {
                                free(buf);
                                (void) close(fd);
                                return -ENOMEM;
                        }
                        buf = b;
                        allocated = a;
                }
                n = read(fd, buf + size, allocated - size);
                if (n < 0) {
                        int r = -errno;

                        free(buf);
                        (void) close(fd);
                        return r;
                }
                if (n == 0)
                        break;
                size += (size_t) n;
        }
        (void) close(fd);

        /* An exact-size copy, so that a read past the end is one in a sanitizer build. */
        *ret = malloc(size ? size : 1);
        if (!*ret) {
                free(buf);
                return -ENOMEM;
        }
        if (size > 0)
                memcpy(*ret, buf, size);
        free(buf);
        *ret_size = size;
        return 0;
}

static int run_file(const char *path) {
        uint8_t *data = NULL;
        size_t size = 0;
        int r;

        r = read_file(path, &data, &size);
        if (r < 0) {
                fprintf(stderr, "Failed to read '%s': %s\n", path, strerror(-r));
                return r;
        }
        fprintf(stderr, "Running '%s' (%zu bytes)\n", path, size);
        (void) LLVMFuzzerTestOneInput(data, size);
        free(data);
        return 0;
}

static int compare_names(const struct dirent **a, const struct dirent **b) {
        return strcmp((*a)->d_name, (*b)->d_name);
}

static int visible(const struct dirent *de) {
        return de->d_name[0] != '.';
}

/* Runs every file of dir, in name order; returns how many, or -errno. */
static int run_dir(const char *dir) {
        struct dirent **list;
        int n, ran = 0, r = 0;

        n = scandir(dir, &list, visible, compare_names);
        if (n < 0) {
                r = -errno;
                fprintf(stderr, "Failed to read directory '%s': %s\n", dir, strerror(-r));
                return r;
        }
        for (int i = 0; i < n; i++) {
                char *path;

                /* After a failure, only free the rest of the list. */
                if (r >= 0) {
                        if (asprintf(&path, "%s/%s", dir, list[i]->d_name) < 0)
                                r = -ENOMEM;
                        else {
                                r = run_file(path);
                                free(path);
                                ran++;
                        }
                }
                free(list[i]);
        }
        free(list);
        return r < 0 ? r : ran;
}

int main(int argc, char *argv[]) {
        int total = 0;

        for (int i = 1; i < argc; i++) {
                struct stat st;
                int r;

                if (argv[i][0] == '-')
                        continue;
                if (stat(argv[i], &st) < 0) {
                        fprintf(stderr, "Failed to stat '%s': %s\n", argv[i], strerror(errno));
                        return EXIT_FAILURE;
                }
                r = S_ISDIR(st.st_mode) ? run_dir(argv[i]) : run_file(argv[i]);
                if (r < 0)
                        return EXIT_FAILURE;
                total += S_ISDIR(st.st_mode) ? r : 1;
        }
        if (total == 0) {
                fprintf(stderr, "No inputs: name files or directories of inputs.\n");
                return EXIT_FAILURE;
        }
        fprintf(stderr, "Ran %d input%s.\n", total, total == 1 ? "" : "s");
        return EXIT_SUCCESS;
}
