/* fuseloopd: maps data sources as read-only loop devices through FUSE, driven over D-Bus. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "bus-names.h"
#include "fuse-file.h"
#include "log.h"
#include "macro.h"
#include "manager.h"

static const char *arg_run_dir = FUSELOOP_DEFAULT_RUN_DIR;

static void help(void) {
        printf("fuseloopd [OPTIONS...]\n\n"
               "Maps data sources as read-only loop devices through FUSE; serves %s on the system bus.\n\n"
               "  -h --help              Show this help\n"
               "     --version           Show the version\n"
               "     --run-dir DIR       Where the FUSE files live (default: %s)\n"
               "     --log-level LEVEL   err, warning, notice, info (default) or debug\n",
               FUSELOOP_BUS_NAME, FUSELOOP_DEFAULT_RUN_DIR);
}

static int parse_argv(int argc, char *argv[]) {
        enum { ARG_VERSION = 0x100, ARG_RUN_DIR, ARG_LOG_LEVEL };
        static const struct option options[] = {
                { "help",      no_argument,       NULL, 'h'           },
                { "version",   no_argument,       NULL, ARG_VERSION   },
                { "run-dir",   required_argument, NULL, ARG_RUN_DIR   },
                { "log-level", required_argument, NULL, ARG_LOG_LEVEL },
                {}
        };
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
                        if (optarg[0] != '/' || strlen(optarg) > 200)
                                return log_error_errno(EINVAL, "--run-dir needs an absolute path of at most 200 characters: '%s'",
                                                       optarg);
                        arg_run_dir = optarg;
                        break;
                case ARG_LOG_LEVEL:
                        r = log_level_from_string(optarg);
                        if (r < 0)
                                return log_error_errno(EINVAL, "Unknown log level '%s'.", optarg);
                        log_max_level = r;
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

        /* We serve block I/O for mounted file systems: memory we allocate under pressure must not
         * be reclaimed by writing back through our own devices (or being throttled behind them),
         * which would wait for us. PR_SET_IO_FLUSHER sets PF_MEMALLOC_NOIO and PF_LOCAL_THROTTLE
         * for this thread; worker threads, created later, inherit them. */
        if (prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) < 0)
                log_warning_errno(errno, "Failed to mark fuseloopd as an I/O flusher: %m, ignoring");

        r = manager_new(arg_run_dir, &m);
        if (r < 0)
                return EXIT_FAILURE;

        r = manager_startup(m);
        if (r >= 0)
                r = manager_run(m);

        manager_free(m);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
