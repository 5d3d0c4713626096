/* The run directory: where each mapping's FUSE file lives, and what an earlier instance left. */
#pragma once

/* Creates dir if needed. */
int run_dir_prepare(const char *dir);

/* Cleans up what an earlier instance left in dir: loop devices backed by files in it are detached
 * (lazily if still open), FUSE mounts in it are unmounted lazily, and leftover files are removed.
 * Each step is logged. Must run before this instance mounts anything in dir. Returns the number
 * of things cleaned up. */
int run_dir_cleanup(const char *dir);
