/* fuseloopd: maps data sources as read-only loop devices through FUSE, driven over D-Bus. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus-names.h"
#include "fuse-file.h"
#include "log.h"
#include "macro.h"
#include "manager.h"
#include "util.h"

static const char *arg_run_dir = FUSELOOP_DEFAULT_RUN_DIR;
static uint64_t arg_idle_timeout_sec = FUSELOOP_DEFAULT_IDLE_TIMEOUT_SEC;
static unsigned arg_user_quota = FUSELOOP_DEFAULT_USER_QUOTA;

/* The run directory and a '/' fit in struct loop_info64's lo_file_name[64] with its NUL. */
#define RUN_DIR_MAX 62u

/* A week; more is a mistake rather than a wish (0 means never). */
#define IDLE_TIMEOUT_MAX_SEC (7ULL * 24 * 3600)

static void help(void) {
        printf("fuseloopd [OPTIONS...]\n\n"
               "Maps data sources as read-only loop devices through FUSE; serves %s on the system bus.\n\n"
               "  -h --help              Show this help\n"
               "     --version           Show the version\n"
               "     --run-dir DIR       Where the FUSE files live (default: %s)\n"
               "     --log-level LEVEL   err, warning, notice, info (default) or debug\n"
               "     --idle-timeout SECS Exit after SECS seconds with no mappings and no calls\n"
               "                         (default: %u; 0: never)\n"
               "     --max-mappings-per-user N\n"
               "                         Most mappings one user other than root may have\n"
               "                         (default: %u)\n",
               FUSELOOP_BUS_NAME, FUSELOOP_DEFAULT_RUN_DIR, FUSELOOP_DEFAULT_IDLE_TIMEOUT_SEC,
               FUSELOOP_DEFAULT_USER_QUOTA);
}

static int parse_argv(int argc, char *argv[]) {
        enum { ARG_VERSION = 0x100, ARG_RUN_DIR, ARG_LOG_LEVEL, ARG_IDLE_TIMEOUT, ARG_USER_QUOTA };
        static const struct option options[] = {
                { "help",      no_argument,       NULL, 'h'           },
                { "version",   no_argument,       NULL, ARG_VERSION   },
                { "run-dir",   required_argument, NULL, ARG_RUN_DIR   },
                { "log-level", required_argument, NULL, ARG_LOG_LEVEL },
                { "idle-timeout", required_argument, NULL, ARG_IDLE_TIMEOUT },
                { "max-mappings-per-user", required_argument, NULL, ARG_USER_QUOTA },
                {}
        };
        uint64_t u;
        int c, r;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("fuseloopd %s\n", FUSELOOP_VERSION);
                        return 0;
                case ARG_RUN_DIR:
                        /* Loop devices carry "<run-dir>/<name>" in their 64-byte file name
                         * field, by which a later instance recognises its leftovers even when
                         * the kernel no longer knows the backing file's path. */
                        if (optarg[0] != '/' || strlen(optarg) > RUN_DIR_MAX)
                                return log_error_errno(EINVAL, "--run-dir needs an absolute path of at most %u characters: '%s'",
                                                       RUN_DIR_MAX, optarg);
                        arg_run_dir = optarg;
                        break;
                case ARG_LOG_LEVEL:
                        r = log_level_from_string(optarg);
                        if (r < 0)
                                return log_error_errno(EINVAL, "Unknown log level '%s'.", optarg);
                        log_max_level = r;
                        break;
                case ARG_IDLE_TIMEOUT:
                        if (safe_atou64(optarg, &u) < 0 || u > IDLE_TIMEOUT_MAX_SEC)
                                return log_error_errno(EINVAL, "--idle-timeout needs a number of seconds from 0 (never) to %llu: '%s'",
                                                       IDLE_TIMEOUT_MAX_SEC, optarg);
                        arg_idle_timeout_sec = u;
                        break;
                case ARG_USER_QUOTA:
                        if (safe_atou64(optarg, &u) < 0 || u > FUSELOOP_MAPPINGS_MAX)
                                return log_error_errno(EINVAL, "--max-mappings-per-user needs a number from 0 to %u: '%s'",
                                                       FUSELOOP_MAPPINGS_MAX, optarg);
                        arg_user_quota = (unsigned) u;
                        break;
                case '?':
                        return -EINVAL;
                default:
                        abort();
                }

        if (optind < argc)
                return log_error_errno(EINVAL, "This program takes no arguments.");
        return 1;
}

int main(int argc, char *argv[]) {
        Manager *m = NULL;
        int r;

        r = parse_argv(argc, argv);
        if (r <= 0)
                return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;

        fuse_file_setup_logging();

        r = manager_new(arg_run_dir, &m);
        if (r < 0)
                return EXIT_FAILURE;
        m->idle_timeout_usec = arg_idle_timeout_sec * 1000000ULL;
        m->user_quota = arg_user_quota;

        r = manager_startup(m);
        if (r >= 0)
                r = manager_run(m);

        manager_free(m);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
