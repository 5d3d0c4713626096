/* The run directory: where each mapping's FUSE file lives, and what an earlier instance left. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "loop-device.h"

/* Creates dir if needed. */
int run_dir_prepare(const char *dir);

/* Takes the lock that makes this the only daemon using dir (flock on the directory, released
 * when the process dies), waiting a few seconds for an earlier instance that is exiting. Returns
 * the fd that holds it, or -errno (logged). */
int run_dir_lock(const char *dir);

/* Runs on a worker. Cleans up what an earlier instance left in dir: loop devices backed by files
 * in it are detached (lazily if still open), FUSE mounts in it are unmounted lazily, and leftover
 * files are removed; each step is logged. Mappings resumed from the fd store are left alone: the
 * attachments in keep_loops and the names in keep_names (NULL-terminated, may be NULL). Must run
 * before this instance mounts anything else in dir. Returns the number of things cleaned up. */
int run_dir_cleanup(const char *dir, const LoopDevice *keep_loops, size_t n_keep_loops, char *const *keep_names);

/* Beside each mapping's run file "<run-dir>/<name>", the file udev's rules import for its loop
 * device (60-fuseloop.rules): "<run-dir>/<name>#udev" ('#' is never part of a name), with
 * FUSELOOP_NAME, FUSELOOP_SOURCE and, for an untrusted mapping, FUSELOOP_UNTRUSTED=1. */
#define RUN_DIR_UDEV_SUFFIX "#udev"

/* Runs on a worker, before the loop device is configured: writes that file for the run file
 * run_file. Returns 0 or -errno. */
int run_dir_write_udev_info(const char *run_file, const char *name, const char *source, bool untrusted);

/* Removes it; returns 0 or -errno (not -ENOENT). */
int run_dir_remove_udev_info(const char *run_file);
