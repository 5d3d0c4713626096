/* fuseloopctl: the command-line client that maps, unmaps, lists and inspects fuseloopd mappings
 * through the org.proxmox.FuseLoop1 system bus API; it holds no state of its own. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-bus.h>
#include <systemd/sd-login.h>

#include "bus-names.h"
#include "macro.h"
#include "util.h"

/* Map returns only once udev has processed the device and all its partitions, which can take a
 * while on a busy machine, and polkit may first wait up to two minutes for a password; Unmap may
 * wait for the kernel to release the backing file. */
#define CALL_TIMEOUT_USEC (UINT64_C(300) * UINT64_C(1000000))

#define EXIT_USAGE 2

/* polkit's text authentication agent: looked up in PATH, then at its usual place. */
#define POLKIT_AGENT_NAME "pkttyagent"
#define POLKIT_AGENT_PATH "/usr/bin/pkttyagent"
/* How long we wait for the agent to register: longer than the 25 s D-Bus timeout of its own
 * registration call, so that normally the agent gives up first. */
#define POLKIT_AGENT_REGISTER_TIMEOUT_MSEC (30 * 1000)

DEFINE_TRIVIAL_CLEANUP_FUNC(DIR *, closedir)

/* Long-only options; each value is also a bit in arg_given so verbs can reject foreign options. */
enum {
        ARG_VERSION = 0x100,
        ARG_PARTSCAN,
        ARG_OFFSET,
        ARG_SIZE,
        ARG_SECTOR_SIZE,
        ARG_DIRECT_IO,
        ARG_BIND,
        ARG_TIMEOUT,
        ARG_LAZY,
        ARG_NO_LEGEND,
        ARG_NO_ASK_PASSWORD,
};
#define ARG_BIT(a) (1u << ((a) - ARG_VERSION))
/* Options every verb accepts. */
#define ARG_GLOBAL ARG_BIT(ARG_NO_ASK_PASSWORD)

static const struct option options[] = {
        { "help",            no_argument,       NULL, 'h'                 },
        { "version",         no_argument,       NULL, ARG_VERSION         },
        { "partscan",        no_argument,       NULL, ARG_PARTSCAN        },
        { "offset",          required_argument, NULL, ARG_OFFSET          },
        { "size",            required_argument, NULL, ARG_SIZE            },
        { "sector-size",     required_argument, NULL, ARG_SECTOR_SIZE     },
        { "direct-io",       required_argument, NULL, ARG_DIRECT_IO       },
        { "bind",            no_argument,       NULL, ARG_BIND            },
        { "timeout",         required_argument, NULL, ARG_TIMEOUT         },
        { "lazy",            no_argument,       NULL, ARG_LAZY            },
        { "no-legend",       no_argument,       NULL, ARG_NO_LEGEND       },
        { "no-ask-password", no_argument,       NULL, ARG_NO_ASK_PASSWORD },
        {}
};

static unsigned arg_given;
static uint64_t arg_offset;
static uint64_t arg_size;
static uint32_t arg_sector_size;
static bool arg_direct_io;
static uint32_t arg_timeout;
static bool arg_ask_password = true;

/* Prints one "fuseloopctl: ..." line on stderr, with %m standing for error. Returns -abs(error),
 * or -EINVAL when error is 0, so callers can return it. */
_printf_(2, 3)
static int error_errno(int error, const char *fmt, ...) {
        va_list ap;

        error = error < 0 ? -error : error;
        errno = error;
        (void) fputs("fuseloopctl: ", stderr);
        va_start(ap, fmt);
        (void) vfprintf(stderr, fmt, ap);
        va_end(ap);
        (void) fputc('\n', stderr);
        return error > 0 ? -error : -EINVAL;
}

/* Reports a failed bus call on one line. Our API's errors carry a complete message that quotes the
 * bad input, so it stands alone; anything else (standard, errno-mapped or local errors) gets
 * context. A refusal by polkit also says which action the call needs (polkit_action, NULL for
 * calls that need none), because that is what an administrator grants with a polkit rule. */
_printf_(4, 5)
static int bus_error_report(const sd_bus_error *error, int r, const char *polkit_action,
                            const char *fmt, ...) {
        char context[512], hint[384] = "";
        va_list ap;

        if (r >= 0)
                r = -EIO;

        if (sd_bus_error_is_set(error) && error->message &&
            startswith(error->name, FUSELOOP_ERROR_PREFIX))
                return error_errno(r, "%s", error->message);

        if (polkit_action &&
            sd_bus_error_has_name(error, SD_BUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED))
                (void) snprintf(hint, sizeof(hint), " (polkit action '%s' needs authentication: "
                                "run this from a terminal without --no-ask-password, or have an "
                                "administrator allow it with a polkit rule)", polkit_action);
        else if (polkit_action && sd_bus_error_has_name(error, SD_BUS_ERROR_ACCESS_DENIED))
                (void) snprintf(hint, sizeof(hint), " (this needs polkit action '%s', which an "
                                "administrator can allow with a polkit rule)", polkit_action);

        va_start(ap, fmt);
        (void) vsnprintf(context, sizeof(context), fmt, ap);
        va_end(ap);

        if (sd_bus_error_is_set(error) && error->message)
                return error_errno(r, "%s: %s%s", context, error->message, hint);
        return error_errno(r, "%s: %m%s", context, hint);
}

static int bus_create_error(int r) {
        return error_errno(r, "failed to create bus message: %m");
}

static int bus_parse_error(int r) {
        return error_errno(r, "failed to parse bus message: %m");
}

static const char *empty_to_dash(const char *s) {
        return s && *s ? s : "-";
}

static const char *yes_no(int b) {
        return b ? "yes" : "no";
}

/* Whether polkit may ask for a password on our calls: someone can answer (stdin is a terminal) and
 * --no-ask-password was not given. */
static bool ask_password(void) {
        return arg_ask_password && isatty(STDIN_FILENO);
}

/* Connects to the system bus (DBUS_SYSTEM_BUS_ADDRESS is honoured). When ask_password(), the
 * daemon may let polkit ask for interactive authorization on our calls; otherwise polkit must
 * decide without asking. Returns 0 and the connection, or -errno after reporting it. */
static int bus_connect(sd_bus **ret) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        int r;

        r = sd_bus_open_system(&bus);
        if (r < 0)
                return error_errno(r, "failed to connect to the system bus: %m");

        /* Applies to every method call message created on this connection from now on. */
        r = sd_bus_set_allow_interactive_authorization(bus, ask_password());
        if (r < 0)
                return error_errno(r, "failed to set interactive authorization: %m");

        *ret = TAKE_PTR(bus);
        return 0;
}

/* Whether polkitd finds a login session for this process, looked up the way polkitd (with logind)
 * does: the session of the process, else the graphical session of the user who owns it. */
static bool polkit_session_known(void) {
        _cleanup_(freep) char *session = NULL, *display = NULL;
        uid_t uid;

        if (sd_pid_get_session(0, &session) >= 0)
                return true;

        return sd_pid_get_owner_uid(0, &uid) >= 0 && sd_uid_get_display(uid, &display) >= 0;
}

/* Waits until the write end of the pipe whose read end is fd is closed or written to, timeout_msec
 * at most. Returns 1 when it was, 0 on timeout, or -errno. */
static int pipe_wait_hangup(int fd, int timeout_msec) {
        struct timespec now;
        int64_t deadline;
        int r;

        if (clock_gettime(CLOCK_MONOTONIC, &now) < 0)
                return negative_errno();
        deadline = (int64_t) now.tv_sec * 1000 + now.tv_nsec / 1000000 + timeout_msec;

        for (;;) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                int64_t left;

                if (clock_gettime(CLOCK_MONOTONIC, &now) < 0)
                        return negative_errno();
                left = deadline - ((int64_t) now.tv_sec * 1000 + now.tv_nsec / 1000000);
                if (left <= 0)
                        return 0;

                r = poll(&p, 1, (int) left);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return negative_errno();
                if (r > 0)
                        return 1;
        }
}

/* Ends the agent that polkit_agent_start() returned (0: none): SIGTERM, on which pkttyagent
 * restores the terminal, SIGCONT in case it was stopped, and waits for its exit. Returns 0. */
static pid_t polkit_agent_stop(pid_t pid) {
        if (pid <= 0)
                return 0;

        (void) kill(pid, SIGTERM);
        (void) kill(pid, SIGCONT);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
        return 0;
}

static void polkit_agent_stopp(pid_t *pid) {
        *pid = polkit_agent_stop(*pid);
}

/* Like systemctl, brings a text authentication agent for the next call that may need polkit
 * authorization, so that on a terminal without a desktop's agent (an ssh login, a console) polkit
 * asks for the password there rather than refusing the call. Only when ask_password(), and not
 * for root, whom the daemon never sends to polkit. Starts pkttyagent for this process and waits
 * until it has registered with polkitd (it closes the --notify-fd then; it exits if it cannot
 * register). A missing or failing agent is no error: a call that needs a password then fails as
 * it would without one. Returns the agent's pid, for polkit_agent_stop(), or 0 if none runs. */
static pid_t polkit_agent_start(void) {
        _cleanup_(closep) int rfd = -EBADF, wfd = -EBADF;
        char notify_fd[16], process[16];
        char *argv[8];
        size_t n = 0;
        pid_t parent, pid;
        int fds[2], r;

        if (!ask_password() || geteuid() == 0)
                return 0;

        if (pipe2(fds, O_CLOEXEC) < 0) {
                (void) error_errno(errno, "failed to start the polkit agent: %m, ignoring");
                return 0;
        }
        rfd = fds[0];
        wfd = fds[1];

        parent = getpid();
        (void) snprintf(notify_fd, sizeof(notify_fd), "%i", wfd);
        (void) snprintf(process, sizeof(process), "%i", (int) parent);
        argv[n++] = (char *) POLKIT_AGENT_NAME;
        argv[n++] = (char *) "--notify-fd";
        argv[n++] = notify_fd;
        argv[n++] = (char *) "--process";
        argv[n++] = process;
        /* With --fallback the agent yields to one that our login session has (a desktop's). But
         * polkitd (122, and upstream up to at least 127) passes over a fallback agent of a process
         * whose session it cannot tell, as on a machine without logind: there, no session agent
         * could be found either, so ours must register as the process's only agent. */
        if (polkit_session_known())
                argv[n++] = (char *) "--fallback";
        argv[n] = NULL;

        pid = fork();
        if (pid < 0) {
                (void) error_errno(errno, "failed to start the polkit agent: %m, ignoring");
                return 0;
        }
        if (pid == 0) {
                /* The agent ends with us, whatever ends us; only the notify fd crosses exec. */
                if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != parent)
                        _exit(EXIT_FAILURE);
                if (fcntl(wfd, F_SETFD, 0) < 0)
                        _exit(EXIT_FAILURE);

                (void) execvp(POLKIT_AGENT_NAME, argv);
                (void) execv(POLKIT_AGENT_PATH, argv);
                _exit(EXIT_FAILURE);
        }

        wfd = safe_close(wfd);

        r = pipe_wait_hangup(rfd, POLKIT_AGENT_REGISTER_TIMEOUT_MSEC);
        if (r == 0)
                (void) error_errno(ETIMEDOUT, "the polkit agent did not register within %i s, "
                                   "ignoring", POLKIT_AGENT_REGISTER_TIMEOUT_MSEC / 1000);
        else if (r < 0)
                (void) error_errno(r, "failed to wait for the polkit agent: %m, ignoring");

        return pid;
}

/* Appends the map options the user gave, and only those, as the a{sv} argument of Map. */
static int append_map_options(sd_bus_message *m) {
        int r;

        r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r < 0)
                return r;

        if (arg_given & ARG_BIT(ARG_OFFSET)) {
                r = sd_bus_message_append(m, "{sv}", FUSELOOP_OPT_OFFSET, "t", arg_offset);
                if (r < 0)
                        return r;
        }
        if (arg_given & ARG_BIT(ARG_SIZE)) {
                r = sd_bus_message_append(m, "{sv}", FUSELOOP_OPT_SIZE, "t", arg_size);
                if (r < 0)
                        return r;
        }
        if (arg_given & ARG_BIT(ARG_PARTSCAN)) {
                r = sd_bus_message_append(m, "{sv}", FUSELOOP_OPT_PARTITION_SCAN, "b", 1);
                if (r < 0)
                        return r;
        }
        if (arg_given & ARG_BIT(ARG_SECTOR_SIZE)) {
                r = sd_bus_message_append(m, "{sv}", FUSELOOP_OPT_SECTOR_SIZE, "u",
                                          arg_sector_size);
                if (r < 0)
                        return r;
        }
        if (arg_given & ARG_BIT(ARG_DIRECT_IO)) {
                r = sd_bus_message_append(m, "{sv}", FUSELOOP_OPT_DIRECT_IO, "b",
                                          (int) arg_direct_io);
                if (r < 0)
                        return r;
        }
        if (arg_given & ARG_BIT(ARG_BIND)) {
                r = sd_bus_message_append(m, "{sv}", FUSELOOP_OPT_BIND_TO_CALLER, "b", 1);
                if (r < 0)
                        return r;
        }
        if (arg_given & ARG_BIT(ARG_TIMEOUT)) {
                r = sd_bus_message_append(m, "{sv}", FUSELOOP_OPT_TIMEOUT, "u", arg_timeout);
                if (r < 0)
                        return r;
        }

        return sd_bus_message_close_container(m);
}

/* map --bind: the daemon unmaps the mapping when our bus connection closes, so keep it open until
 * SIGINT, SIGTERM or SIGHUP. stdout is closed first, so that a reader of a pipe gets the device
 * and end-of-file at once. */
static int hold_until_signal(sd_bus *bus) {
        sigset_t mask;
        int sig, fd;

        if (fflush(stdout) != 0)
                return error_errno(errno, "failed to write the device: %m");
        fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
                (void) dup2(fd, STDOUT_FILENO);
                (void) close(fd);
        }

        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGHUP);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0 || sigwait(&mask, &sig) != 0)
                return error_errno(errno, "failed to wait for a signal: %m");

        /* Closing the connection (on return) is what unmaps. */
        (void) bus;
        return 0;
}

/* map NAME SOURCE: opens SOURCE with our own credentials, hands the fd to Map and prints the
 * device path. The name goes through unchanged so users see the daemon's validation. */
static int verb_map(char **args) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(closep) int fd = -EBADF;
        _cleanup_(polkit_agent_stopp) pid_t agent = 0;
        const char *name = args[0], *source = args[1], *path, *device;
        int r;

        fd = open(source, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return error_errno(errno, "failed to open '%s': %m", source);

        r = bus_connect(&bus);
        if (r < 0)
                return r;

        r = sd_bus_message_new_method_call(bus, &m, FUSELOOP_BUS_NAME, FUSELOOP_MANAGER_PATH,
                                           FUSELOOP_MANAGER_INTERFACE, "Map");
        if (r < 0)
                return bus_create_error(r);

        /* sd-bus duplicates the fd into the message; ours is closed on return. */
        r = sd_bus_message_append(m, "sh", name, fd);
        if (r < 0)
                return bus_create_error(r);

        r = append_map_options(m);
        if (r < 0)
                return bus_create_error(r);

        agent = polkit_agent_start();

        r = sd_bus_call(bus, m, CALL_TIMEOUT_USEC, &error, &reply);
        /* polkit has answered: no agent stays with map --bind. */
        agent = polkit_agent_stop(agent);
        if (r < 0)
                return bus_error_report(&error, r, FUSELOOP_POLKIT_MAP, "failed to map '%s'", name);

        r = sd_bus_message_read(reply, "os", &path, &device);
        if (r < 0)
                return bus_parse_error(r);

        printf("%s\n", device);
        if (!(arg_given & ARG_BIT(ARG_BIND)))
                return 0;

        return hold_until_signal(bus);
}

/* unmap NAME|/dev/loopN: the daemon resolves either form. */
static int verb_unmap(char **args) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(polkit_agent_stopp) pid_t agent = 0;
        const char *target = args[0];
        int r;

        r = bus_connect(&bus);
        if (r < 0)
                return r;

        r = sd_bus_message_new_method_call(bus, &m, FUSELOOP_BUS_NAME, FUSELOOP_MANAGER_PATH,
                                           FUSELOOP_MANAGER_INTERFACE, "Unmap");
        if (r < 0)
                return bus_create_error(r);

        r = sd_bus_message_append(m, "s", target);
        if (r < 0)
                return bus_create_error(r);

        if (arg_given & ARG_BIT(ARG_LAZY))
                r = sd_bus_message_append(m, "a{sv}", 1, FUSELOOP_OPT_LAZY, "b", 1);
        else
                r = sd_bus_message_append(m, "a{sv}", 0);
        if (r < 0)
                return bus_create_error(r);

        agent = polkit_agent_start();

        /* The owner of a mapping and root may always unmap it, so a refusal means that it is
         * someone else's. */
        r = sd_bus_call(bus, m, CALL_TIMEOUT_USEC, &error, NULL);
        agent = polkit_agent_stop(agent);
        if (r < 0)
                return bus_error_report(&error, r, FUSELOOP_POLKIT_UNMAP_OTHER,
                                        "failed to unmap '%s'", target);

        return 0;
}

/* The properties of a mapping object; strings point into the reply they were read from. */
typedef struct MappingStatus {
        const char *name, *device, *backing_file, *source, *state;
        uint64_t size, offset, created_usec, bytes_read, read_requests, read_errors, timed_out_reads;
        uint32_t sector_size, owner_uid, timeout_sec;
        int partition_scan, direct_io, stalled;
} MappingStatus;

static const struct {
        const char *name;
        const char *signature;
        size_t offset;
} status_properties[] = {
        { "Name",          "s", offsetof(MappingStatus, name)           },
        { "Device",        "s", offsetof(MappingStatus, device)         },
        { "BackingFile",   "s", offsetof(MappingStatus, backing_file)   },
        { "Size",          "t", offsetof(MappingStatus, size)           },
        { "Offset",        "t", offsetof(MappingStatus, offset)         },
        { "SectorSize",    "u", offsetof(MappingStatus, sector_size)    },
        { "PartitionScan", "b", offsetof(MappingStatus, partition_scan) },
        { "DirectIO",      "b", offsetof(MappingStatus, direct_io)      },
        { "Source",        "s", offsetof(MappingStatus, source)         },
        { "State",         "s", offsetof(MappingStatus, state)          },
        { "OwnerUID",      "u", offsetof(MappingStatus, owner_uid)      },
        { "CreatedUSec",   "t", offsetof(MappingStatus, created_usec)   },
        { "BytesRead",     "t", offsetof(MappingStatus, bytes_read)     },
        { "ReadRequests",  "t", offsetof(MappingStatus, read_requests)  },
        { "ReadErrors",    "t", offsetof(MappingStatus, read_errors)    },
        { "TimedOutReads", "t", offsetof(MappingStatus, timed_out_reads) },
        { "Timeout",       "u", offsetof(MappingStatus, timeout_sec)    },
        { "Stalled",       "b", offsetof(MappingStatus, stalled)        },
};

/* Reads an a{sv} of Mapping properties (a GetAll reply, or one interface of GetManagedObjects) into
 * *st; properties we do not know are skipped. Returns 0 or -errno after reporting it. */
static int status_parse(sd_bus_message *reply, MappingStatus *st) {
        int r;

        r = sd_bus_message_enter_container(reply, 'a', "{sv}");
        if (r < 0)
                return bus_parse_error(r);

        for (;;) {
                const char *key;
                size_t i;

                r = sd_bus_message_enter_container(reply, 'e', "sv");
                if (r < 0)
                        return bus_parse_error(r);
                if (r == 0)
                        break;

                r = sd_bus_message_read(reply, "s", &key);
                if (r < 0)
                        return bus_parse_error(r);

                for (i = 0; i < ELEMENTSOF(status_properties); i++)
                        if (strcmp(key, status_properties[i].name) == 0)
                                break;

                if (i >= ELEMENTSOF(status_properties)) {
                        r = sd_bus_message_skip(reply, "v");
                        if (r < 0)
                                return bus_parse_error(r);
                } else {
                        r = sd_bus_message_read(reply, "v", status_properties[i].signature,
                                                (char *) st + status_properties[i].offset);
                        if (r < 0)
                                return error_errno(r, "failed to read property '%s' of type "
                                                   "'%s': %m", key,
                                                   status_properties[i].signature);
                }

                r = sd_bus_message_exit_container(reply);
                if (r < 0)
                        return bus_parse_error(r);
        }

        r = sd_bus_message_exit_container(reply);
        if (r < 0)
                return bus_parse_error(r);

        return 0;
}

/* Formats the owner of a mapping: the user name of uid, or the decimal uid when there is no passwd
 * entry. A failed lookup (say, an unreachable directory service) is treated like a missing entry:
 * it must not fail a listing. Returns 1 (a name) or 0 (a number) and a malloc()ed string in
 * *ret, or -ENOMEM. */
static int owner_format(uid_t uid, char **ret) {
        _cleanup_(freep) char *buf = NULL;
        struct passwd pw, *result = NULL;
        size_t len = 1024;
        char *s;
        int r;

        /* getpwuid_r() asks for a bigger buffer with ERANGE; a passwd entry is small, so give up
         * at 1 MiB. */
        for (;;) {
                char *p = realloc(buf, len);

                if (!p)
                        return -ENOMEM;
                buf = p;

                r = getpwuid_r(uid, &pw, buf, len, &result);
                if (r != ERANGE || len >= 1024 * 1024)
                        break;
                len *= 2;
        }

        if (r == 0 && result && !isempty(result->pw_name)) {
                s = strdup(result->pw_name);
                if (!s)
                        return -ENOMEM;
                *ret = s;
                return 1;
        }

        if (asprintf(&s, "%" PRIu32, (uint32_t) uid) < 0)
                return -ENOMEM;
        *ret = s;
        return 0;
}

/* One line of the list table; the strings other than owner and state point into the reply
 * message. */
typedef struct ListRow {
        const char *name, *device, *source;
        char state[64];
        char size[FORMAT_SIZE_MAX];
        uint32_t owner_uid;
        char *owner;
} ListRow;

/* The rows of the list table; the cleanup frees what the rows own. */
typedef struct ListTable {
        ListRow *rows;
        size_t n, allocated;
} ListTable;

static void list_table_done(ListTable *t) {
        for (size_t i = 0; i < t->n; i++)
                free(t->rows[i].owner);
        t->rows = mfree(t->rows);
        t->n = t->allocated = 0;
}

static int list_row_compare(const void *a, const void *b) {
        return strcmp(((const ListRow *) a)->name, ((const ListRow *) b)->name);
}

/* Adds the row of one mapping to t. Returns 0 or -errno after reporting it. */
static int list_table_add(ListTable *t, const char *path, const MappingStatus *st) {
        ListRow *row;
        int r;

        if (t->n >= t->allocated) {
                size_t k = MAX(t->allocated * 2, (size_t) 16);
                ListRow *p = reallocarray(t->rows, k, sizeof(ListRow));

                if (!p)
                        return error_errno(ENOMEM, "out of memory");
                t->rows = p;
                t->allocated = k;
        }

        row = &t->rows[t->n];
        *row = (ListRow) {
                /* Every mapping object has a Name; the path is only a last resort. */
                .name = isempty(st->name) ? path : st->name,
                .device = empty_to_dash(st->device),
                .source = empty_to_dash(st->source),
                .owner_uid = st->owner_uid,
        };
        (void) format_size(row->size, sizeof(row->size), st->size);
        /* A stalled source is what someone looking at the list needs to see first. States are
         * short words; a longer one from a newer daemon is cut, not overflowed. */
        (void) snprintf(row->state, sizeof(row->state), "%s%s", empty_to_dash(st->state),
                        st->stalled ? " (stalled)" : "");

        /* Most mappings share a few owners: ask the user database once per uid. */
        for (size_t i = 0; i < t->n; i++)
                if (t->rows[i].owner_uid == row->owner_uid) {
                        row->owner = strdup(t->rows[i].owner);
                        if (!row->owner)
                                return error_errno(ENOMEM, "out of memory");
                        break;
                }
        if (!row->owner) {
                r = owner_format(row->owner_uid, &row->owner);
                if (r < 0)
                        return error_errno(r, "failed to format the owner of '%s': %m", row->name);
        }

        t->n++;
        return 0;
}

/* Reads the next object of a GetManagedObjects reply (entered at its array): its path and, if it
 * is a mapping, its properties into *st. Returns 0 at the end of the array, 1 for an object that is
 * not a mapping, 2 for a mapping, or -errno after reporting it. */
static int managed_object_read(sd_bus_message *reply, const char **ret_path, MappingStatus *st) {
        bool is_mapping = false;
        int r;

        r = sd_bus_message_enter_container(reply, 'e', "oa{sa{sv}}");
        if (r <= 0)
                return r < 0 ? bus_parse_error(r) : 0;

        r = sd_bus_message_read(reply, "o", ret_path);
        if (r < 0)
                return bus_parse_error(r);

        r = sd_bus_message_enter_container(reply, 'a', "{sa{sv}}");
        if (r < 0)
                return bus_parse_error(r);

        /* Besides ours, sd-bus lists the standard interfaces of each object. */
        for (;;) {
                const char *interface;

                r = sd_bus_message_enter_container(reply, 'e', "sa{sv}");
                if (r < 0)
                        return bus_parse_error(r);
                if (r == 0)
                        break;

                r = sd_bus_message_read(reply, "s", &interface);
                if (r < 0)
                        return bus_parse_error(r);

                if (streq(interface, FUSELOOP_MAPPING_INTERFACE)) {
                        r = status_parse(reply, st);
                        if (r < 0)
                                return r;
                        is_mapping = true;
                } else {
                        r = sd_bus_message_skip(reply, "a{sv}");
                        if (r < 0)
                                return bus_parse_error(r);
                }

                r = sd_bus_message_exit_container(reply);
                if (r < 0)
                        return bus_parse_error(r);
        }

        r = sd_bus_message_exit_container(reply);
        if (r >= 0)
                r = sd_bus_message_exit_container(reply);
        if (r < 0)
                return bus_parse_error(r);

        return is_mapping ? 2 : 1;
}

/* list: one aligned line per mapping, sorted by name. The List method has no owner, so all
 * columns come from the mapping objects' properties, fetched in one GetManagedObjects call. */
static int verb_list(char **args) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(list_table_done) ListTable t = {};
        int wname = strlen("NAME"), wdev = strlen("DEVICE"), wsize = strlen("SIZE");
        int wstate = strlen("STATE"), wowner = strlen("OWNER");
        int r;

        (void) args;

        r = bus_connect(&bus);
        if (r < 0)
                return r;

        r = sd_bus_call_method(bus, FUSELOOP_BUS_NAME, FUSELOOP_MANAGER_PATH,
                               "org.freedesktop.DBus.ObjectManager", "GetManagedObjects", &error,
                               &reply, NULL);
        if (r < 0)
                return bus_error_report(&error, r, NULL, "failed to list mappings");

        /* Object path -> interface -> property -> value. The bus bounds the reply's size, and
         * with it the table. */
        r = sd_bus_message_enter_container(reply, 'a', "{oa{sa{sv}}}");
        if (r < 0)
                return bus_parse_error(r);

        for (;;) {
                MappingStatus st = {};
                const char *path;

                r = managed_object_read(reply, &path, &st);
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                if (r == 1)
                        continue;  /* not a mapping */

                r = list_table_add(&t, path, &st);
                if (r < 0)
                        return r;
        }

        r = sd_bus_message_exit_container(reply);
        if (r < 0)
                return bus_parse_error(r);

        if (t.n > 0)
                qsort(t.rows, t.n, sizeof(ListRow), list_row_compare);

        for (size_t i = 0; i < t.n; i++) {
                wname = MAX(wname, (int) strlen(t.rows[i].name));
                wdev = MAX(wdev, (int) strlen(t.rows[i].device));
                wsize = MAX(wsize, (int) strlen(t.rows[i].size));
                wstate = MAX(wstate, (int) strlen(t.rows[i].state));
                wowner = MAX(wowner, (int) strlen(t.rows[i].owner));
        }

        if (!(arg_given & ARG_BIT(ARG_NO_LEGEND)))
                printf("%-*s  %-*s  %*s  %-*s  %-*s  %s\n", wname, "NAME", wdev, "DEVICE", wsize,
                       "SIZE", wstate, "STATE", wowner, "OWNER", "SOURCE");
        for (size_t i = 0; i < t.n; i++)
                printf("%-*s  %-*s  %*s  %-*s  %-*s  %s\n", wname, t.rows[i].name, wdev,
                       t.rows[i].device, wsize, t.rows[i].size, wstate, t.rows[i].state, wowner,
                       t.rows[i].owner, t.rows[i].source);

        return 0;
}

static int uint64_compare(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

        return x < y ? -1 : x > y;
}

/* Prints the "Partitions:" line: the loopNpM entries of /sys/class/block/loopN/ in partition
 * order, or "-" when there are none or the device is not known (yet). */
static int print_partitions(const char *device) {
        _cleanup_(closedirp) DIR *d = NULL;
        _cleanup_(freep) uint64_t *parts = NULL;
        size_t n = 0, allocated = 0;
        char dir[64], prefix[32];
        struct dirent *de;
        int nr;

        nr = loop_device_parse_number(device);
        if (nr < 0)
                goto none;

        (void) snprintf(dir, sizeof(dir), "/sys/class/block/loop%i", nr);
        (void) snprintf(prefix, sizeof(prefix), "loop%ip", nr);

        d = opendir(dir);
        if (!d) {
                if (errno != ENOENT)
                        (void) error_errno(errno, "failed to open '%s': %m, ignoring", dir);
                goto none;
        }

        /* The kernel bounds the number of partitions of a disk (DISK_MAX_PARTS). */
        while ((errno = 0, de = readdir(d))) {
                const char *p = startswith(de->d_name, prefix);
                uint64_t m;

                if (!p || p[0] == '0' || safe_atou64(p, &m) < 0)
                        continue;

                if (n >= allocated) {
                        size_t k = MAX(allocated * 2, (size_t) 16);
                        uint64_t *q = reallocarray(parts, k, sizeof(uint64_t));

                        if (!q)
                                return error_errno(ENOMEM, "out of memory");
                        parts = q;
                        allocated = k;
                }
                parts[n++] = m;
        }
        if (errno != 0)
                (void) error_errno(errno, "failed to read '%s': %m, ignoring", dir);

        if (n == 0)
                goto none;

        qsort(parts, n, sizeof(uint64_t), uint64_compare);

        printf("Partitions:");
        for (size_t i = 0; i < n; i++)
                printf(" /dev/%s%" PRIu64, prefix, parts[i]);
        printf("\n");
        return 0;

none:
        printf("Partitions: -\n");
        return 0;
}

/* status NAME: all properties of the mapping object as "Key: value" lines. */
static int verb_status(char **args) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(freep) char *path = NULL, *owner = NULL;
        const char *name = args[0];
        char size[FORMAT_SIZE_MAX], created[64] = "-";
        MappingStatus st = {};
        bool owner_named;
        int r;

        r = sd_bus_path_encode(FUSELOOP_MAPPING_PATH_PREFIX, name, &path);
        if (r < 0)
                return error_errno(r, "failed to build object path for '%s': %m", name);

        r = bus_connect(&bus);
        if (r < 0)
                return r;

        r = sd_bus_call_method(bus, FUSELOOP_BUS_NAME, path, "org.freedesktop.DBus.Properties",
                               "GetAll", &error, &reply, "s", FUSELOOP_MAPPING_INTERFACE);
        if (r < 0) {
                /* sd-bus answers for paths no mapping object claims. */
                if (sd_bus_error_has_name(&error, SD_BUS_ERROR_UNKNOWN_OBJECT) ||
                    sd_bus_error_has_name(&error, SD_BUS_ERROR_UNKNOWN_INTERFACE))
                        return error_errno(ENOENT, "no mapping named '%s'", name);
                return bus_error_report(&error, r, NULL, "failed to get status of '%s'", name);
        }

        r = status_parse(reply, &st);
        if (r < 0)
                return r;

        r = owner_format(st.owner_uid, &owner);
        if (r < 0)
                return error_errno(r, "failed to format the owner of '%s': %m", name);
        owner_named = r > 0;

        if (st.created_usec > 0) {
                time_t t = (time_t) (st.created_usec / UINT64_C(1000000));
                struct tm tm;

                tzset();
                if (!localtime_r(&t, &tm) ||
                    strftime(created, sizeof(created), "%Y-%m-%d %H:%M:%S %Z", &tm) == 0)
                        (void) strcpy(created, "-");
        }

        printf("Name: %s\n", empty_to_dash(st.name));
        printf("Device: %s\n", empty_to_dash(st.device));
        printf("Backing file: %s\n", empty_to_dash(st.backing_file));
        printf("Size: %s (%" PRIu64 " bytes)\n", format_size(size, sizeof(size), st.size), st.size);
        printf("Offset: %" PRIu64 "\n", st.offset);
        printf("Sector size: %" PRIu32 "\n", st.sector_size);
        printf("Partition scan: %s\n", yes_no(st.partition_scan));
        printf("Direct I/O: %s\n", yes_no(st.direct_io));
        if (st.timeout_sec > 0)
                printf("Timeout: %" PRIu32 " s\n", st.timeout_sec);
        else
                printf("Timeout: none\n");
        printf("Source: %s\n", empty_to_dash(st.source));
        printf("State: %s\n", empty_to_dash(st.state));
        printf("Stalled: %s\n", yes_no(st.stalled));
        if (owner_named)
                printf("Owner: %s (UID %" PRIu32 ")\n", owner, st.owner_uid);
        else
                printf("Owner: UID %" PRIu32 "\n", st.owner_uid);
        printf("Created: %s\n", created);
        printf("Bytes read: %" PRIu64 "\n", st.bytes_read);
        printf("Read requests: %" PRIu64 "\n", st.read_requests);
        printf("Read errors: %" PRIu64 "\n", st.read_errors);
        printf("Timed-out reads: %" PRIu64 "\n", st.timed_out_reads);

        return print_partitions(st.device);
}

static void help(void) {
        printf("fuseloopctl [OPTIONS...] COMMAND ...\n"
               "\n"
               "Map data sources read-only as loop devices through fuseloopd.\n"
               "\n"
               "Commands:\n"
               "  map NAME SOURCE          Map SOURCE (opened by this command), print the device\n"
               "  unmap NAME|/dev/loopN    Remove a mapping\n"
               "  list                     List mappings: name, device, size, state, owner (user\n"
               "                           name, or UID without a passwd entry), source\n"
               "  status NAME              Show the properties of a mapping\n"
               "\n"
               "Options:\n"
               "  -h --help                Show this help\n"
               "     --version             Show the version\n"
               "     --partscan            map: scan the device for partitions\n"
               "     --offset BYTES        map: start this far into SOURCE\n"
               "     --size BYTES          map: map this many bytes (default: up to the end)\n"
               "     --sector-size N       map: logical sector size (512, 1024, 2048, 4096)\n"
               "     --direct-io=on|off    map: use direct I/O on the loop device\n"
               "     --bind                map: stay running after printing the device; the mapping\n"
               "                           is unmapped when this command ends (SIGINT/SIGTERM)\n"
               "     --timeout SECS        map: a read that waits longer for SOURCE fails with an\n"
               "                           I/O error (0: wait as long as it takes, the default)\n"
               "     --lazy                unmap: detach once the last user closes the device\n"
               "     --no-legend           list: omit the header line\n"
               "     --no-ask-password     Do not let polkit ask for a password. Without this\n"
               "                           option, when stdin is a terminal, polkit may ask\n"
               "                           through the desktop's agent or, without one, on the\n"
               "                           terminal (fuseloopctl starts pkttyagent)\n"
               "\n"
               "BYTES takes a K, M, G or T suffix (powers of 1024).\n"
               "\n"
               "polkit: map needs " FUSELOOP_POLKIT_MAP ", unmap of another user's\n"
               "mapping needs " FUSELOOP_POLKIT_UNMAP_OTHER ". root needs neither, and\n"
               "the user who made a mapping may always unmap it.\n");
}

/* Returns 1 to go on with a verb, 0 after --help/--version, -EINVAL on a usage error (reported). */
static int parse_argv(int argc, char *argv[]) {
        uint64_t v;
        int c, r;

        /* Report problems ourselves, as one "fuseloopctl: ..." line. */
        opterr = 0;

        while ((c = getopt_long(argc, argv, ":h", options, NULL)) >= 0) {
                if (c >= ARG_VERSION)
                        arg_given |= ARG_BIT(c);

                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("fuseloopctl %s\n", FUSELOOP_VERSION);
                        return 0;
                case ARG_OFFSET:
                        r = parse_size(optarg, &arg_offset);
                        if (r < 0)
                                return error_errno(EINVAL, "invalid offset '%s': %s", optarg,
                                                   strerror(-r));
                        break;
                case ARG_SIZE:
                        r = parse_size(optarg, &arg_size);
                        if (r < 0)
                                return error_errno(EINVAL, "invalid size '%s': %s", optarg,
                                                   strerror(-r));
                        break;
                case ARG_SECTOR_SIZE:
                        /* Which sizes the kernel takes is the daemon's call; we only check that
                         * the value fits the 'u' it is sent as. */
                        r = safe_atou64(optarg, &v);
                        if (r < 0 || v > UINT32_MAX)
                                return error_errno(EINVAL, "invalid sector size '%s'", optarg);
                        arg_sector_size = (uint32_t) v;
                        break;
                case ARG_TIMEOUT:
                        /* The daemon judges the range; we only check that it fits the 'u'. */
                        r = safe_atou64(optarg, &v);
                        if (r < 0 || v > UINT32_MAX)
                                return error_errno(EINVAL, "invalid timeout '%s', expected seconds", optarg);
                        arg_timeout = (uint32_t) v;
                        break;
                case ARG_DIRECT_IO:
                        if (strcmp(optarg, "on") == 0)
                                arg_direct_io = true;
                        else if (strcmp(optarg, "off") == 0)
                                arg_direct_io = false;
                        else
                                return error_errno(EINVAL, "invalid --direct-io value '%s', "
                                                   "expected 'on' or 'off'", optarg);
                        break;
                case ARG_PARTSCAN:
                case ARG_BIND:
                case ARG_LAZY:
                case ARG_NO_LEGEND:
                        break;
                case ARG_NO_ASK_PASSWORD:
                        arg_ask_password = false;
                        break;
                case ':':
                        return error_errno(EINVAL, "option '%s' needs an argument",
                                           argv[optind - 1]);
                case '?':
                        if (optopt > 0 && optopt < ARG_VERSION)
                                return error_errno(EINVAL, "unknown option '-%c'", optopt);
                        return error_errno(EINVAL, "unknown option '%s'", argv[optind - 1]);
                default:
                        return error_errno(EINVAL, "unexpected option %i", c);
                }
        }

        return 1;
}

static const struct {
        const char *name;
        int args;               /* exact number of positional arguments after the verb */
        const char *usage;
        unsigned options;       /* ARG_BIT()s this verb accepts */
        int (*run)(char **args);
} verbs[] = {
        { "map",    2, "map [OPTIONS...] NAME SOURCE",
          ARG_BIT(ARG_PARTSCAN) | ARG_BIT(ARG_OFFSET) | ARG_BIT(ARG_SIZE) |
          ARG_BIT(ARG_SECTOR_SIZE) | ARG_BIT(ARG_DIRECT_IO) | ARG_BIT(ARG_BIND) |
          ARG_BIT(ARG_TIMEOUT), verb_map },
        { "unmap",  1, "unmap [--lazy] NAME|/dev/loopN", ARG_BIT(ARG_LAZY), verb_unmap },
        { "list",   0, "list [--no-legend]",             ARG_BIT(ARG_NO_LEGEND), verb_list },
        { "status", 1, "status NAME",                    0, verb_status },
};

/* Exit codes: 0 success, 1 failure (one line on stderr), 2 usage error. */
int main(int argc, char *argv[]) {
        const char *verb;
        unsigned foreign;
        size_t i;
        int r;

        r = parse_argv(argc, argv);
        if (r < 0)
                return EXIT_USAGE;
        if (r == 0)
                goto finish;

        if (optind >= argc) {
                (void) error_errno(EINVAL, "missing command, see --help");
                return EXIT_USAGE;
        }
        verb = argv[optind];

        for (i = 0; i < ELEMENTSOF(verbs); i++)
                if (strcmp(verb, verbs[i].name) == 0)
                        break;
        if (i >= ELEMENTSOF(verbs)) {
                (void) error_errno(EINVAL, "unknown command '%s', see --help", verb);
                return EXIT_USAGE;
        }

        if (argc - optind - 1 != verbs[i].args) {
                (void) error_errno(EINVAL, "%s arguments, usage: fuseloopctl %s",
                                   argc - optind - 1 < verbs[i].args ? "missing" : "too many",
                                   verbs[i].usage);
                return EXIT_USAGE;
        }

        foreign = arg_given & ~(verbs[i].options | ARG_GLOBAL);
        if (foreign) {
                for (const struct option *o = options; o->name; o++)
                        if (o->val >= ARG_VERSION && (foreign & ARG_BIT(o->val))) {
                                (void) error_errno(EINVAL, "option '--%s' does not apply to '%s'",
                                                   o->name, verb);
                                break;
                        }
                return EXIT_USAGE;
        }

        r = verbs[i].run(argv + optind + 1);

finish:
        /* A device path that never reached the caller is a failure too. */
        if (fflush(stdout) != 0 && r >= 0)
                r = error_errno(errno, "failed to write output: %m");

        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
