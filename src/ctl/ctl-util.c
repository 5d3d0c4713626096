/* What the parts of fuseloopctl share: error reporting and exit codes, the bus connection, the
 * polkit agent, reading mapping objects, partitions and JSON output. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-login.h>

#include "bus-names.h"
#include "ctl.h"
#include "util.h"

/* polkit's text authentication agent: looked up in PATH, then at its usual place. */
#define POLKIT_AGENT_NAME "pkttyagent"
#define POLKIT_AGENT_PATH "/usr/bin/pkttyagent"
/* How long we wait for the agent to register: longer than the 25 s D-Bus timeout of its own
 * registration call, so that normally the agent gives up first. */
#define POLKIT_AGENT_REGISTER_TIMEOUT_MSEC (30 * 1000)

DEFINE_TRIVIAL_CLEANUP_FUNC(DIR *, closedir)

static int exit_code;

void exit_code_set(int code) {
        if (exit_code == 0)
                exit_code = code;
}

int exit_code_get(void) {
        return exit_code != 0 ? exit_code : EXIT_FAIL;
}

int error_errno(int error, const char *fmt, ...) {
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

/* The exit code that a bus error stands for. */
static int bus_error_exit_code(const sd_bus_error *error) {
        if (sd_bus_error_has_name(error, FUSELOOP_ERROR_NOT_FOUND))
                return EXIT_NOT_FOUND;
        if (sd_bus_error_has_name(error, FUSELOOP_ERROR_BUSY))
                return EXIT_BUSY;
        if (sd_bus_error_has_name(error, SD_BUS_ERROR_ACCESS_DENIED) ||
            sd_bus_error_has_name(error, SD_BUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED))
                return EXIT_DENIED;
        return EXIT_FAIL;
}

int bus_error_report(const sd_bus_error *error, int r, const char *polkit_action, const char *fmt, ...) {
        char context[512], hint[384] = "";
        va_list ap;

        if (r >= 0)
                r = -EIO;
        exit_code_set(bus_error_exit_code(error));

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

int bus_create_error(int r) {
        return error_errno(r, "failed to create bus message: %m");
}

int bus_parse_error(int r) {
        return error_errno(r, "failed to parse bus message: %m");
}

const char *empty_to_dash(const char *s) {
        return s && *s ? s : "-";
}

const char *yes_no(int b) {
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
int bus_connect(sd_bus **ret) {
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
pid_t polkit_agent_stop(pid_t pid) {
        if (pid <= 0)
                return 0;

        (void) kill(pid, SIGTERM);
        (void) kill(pid, SIGCONT);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
        return 0;
}

/* Like systemctl, brings a text authentication agent for the next call that may need polkit
 * authorization, so that on a terminal without a desktop's agent (an ssh login, a console) polkit
 * asks for the password there rather than refusing the call. Only when ask_password(), and not
 * for root, whom the daemon never sends to polkit. Starts pkttyagent for this process and waits
 * until it has registered with polkitd (it closes the --notify-fd then; it exits if it cannot
 * register). A missing or failing agent is no error: a call that needs a password then fails as
 * it would without one. Returns the agent's pid, for polkit_agent_stop(), or 0 if none runs. */
pid_t polkit_agent_start(void) {
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
        { "Untrusted",     "b", offsetof(MappingStatus, untrusted)      },
        { "MountPoint",    "s", offsetof(MappingStatus, mount_point)    },
        { "SourceError",   "s", offsetof(MappingStatus, source_error)   },
        { "ReadPath",      "s", offsetof(MappingStatus, read_path)      },
        { "ReadsInFlight", "u", offsetof(MappingStatus, reads_in_flight) },
        { "ReadLatencyP50USec", "t", offsetof(MappingStatus, latency_p50) },
        { "ReadLatencyP90USec", "t", offsetof(MappingStatus, latency_p90) },
        { "ReadLatencyP99USec", "t", offsetof(MappingStatus, latency_p99) },
        { "ReadLatencyMaxUSec", "t", offsetof(MappingStatus, latency_max) },
        { "CacheHitRatio", "d", offsetof(MappingStatus, cache_hit_ratio) },
        { "KernelReadIOs", "t", offsetof(MappingStatus, kernel_read_ios) },
        { "KernelReadBytes", "t", offsetof(MappingStatus, kernel_read_bytes) },
        { "KernelInFlight", "u", offsetof(MappingStatus, kernel_in_flight) },
};

int status_parse(sd_bus_message *reply, MappingStatus *st) {
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

/* A failed lookup (say, an unreachable directory service) is treated like a missing entry: it must
 * not fail a listing. */
int owner_format(uid_t uid, char **ret) {
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

int mappings_get(sd_bus *bus, sd_bus_message **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_call_method(bus, FUSELOOP_BUS_NAME, FUSELOOP_MANAGER_PATH, "org.freedesktop.DBus.ObjectManager",
                               "GetManagedObjects", &error, &reply, NULL);
        if (r < 0)
                return bus_error_report(&error, r, NULL, "failed to list mappings");

        /* Object path -> interface -> property -> value. The bus bounds the reply's size. */
        r = sd_bus_message_enter_container(reply, 'a', "{oa{sa{sv}}}");
        if (r < 0)
                return bus_parse_error(r);

        *ret = TAKE_PTR(reply);
        return 0;
}

int mappings_next(sd_bus_message *reply, const char **ret_path, MappingStatus *st) {
        int r;

        /* Besides the mappings, sd-bus lists the manager object itself. */
        do {
                *st = MAPPING_STATUS_INIT;
                r = managed_object_read(reply, ret_path, st);
        } while (r == 1);

        return r < 0 ? r : r == 2;
}

int mapping_get(sd_bus *bus, const char *name, sd_bus_message **ret_reply, MappingStatus *st) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(freep) char *path = NULL;
        int r;

        r = sd_bus_path_encode(FUSELOOP_MAPPING_PATH_PREFIX, name, &path);
        if (r < 0)
                return error_errno(r, "failed to build the object path of '%s': %m", name);

        r = sd_bus_call_method(bus, FUSELOOP_BUS_NAME, path, "org.freedesktop.DBus.Properties", "GetAll",
                               &error, &reply, "s", FUSELOOP_MAPPING_INTERFACE);
        if (r < 0) {
                /* sd-bus answers for paths no mapping object claims. */
                if (sd_bus_error_has_name(&error, SD_BUS_ERROR_UNKNOWN_OBJECT) ||
                    sd_bus_error_has_name(&error, SD_BUS_ERROR_UNKNOWN_INTERFACE)) {
                        exit_code_set(EXIT_NOT_FOUND);
                        return error_errno(ENOENT, "no mapping named '%s'", name);
                }
                return bus_error_report(&error, r, NULL, "failed to get the properties of '%s'", name);
        }

        *st = MAPPING_STATUS_INIT;
        r = status_parse(reply, st);
        if (r < 0)
                return r;

        *ret_reply = TAKE_PTR(reply);
        return 0;
}

int mapping_resolve(sd_bus *bus, const char *target, char **ret_name) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        MappingStatus st;
        const char *path;
        int nr, r;

        /* Names never start with '/', devices always do. */
        if (target[0] != '/') {
                char *s = strdup(target);

                if (!s)
                        return error_errno(ENOMEM, "out of memory");
                *ret_name = s;
                return 0;
        }

        nr = loop_device_parse_number(target);
        r = mappings_get(bus, &reply);
        if (r < 0)
                return r;

        while ((r = mappings_next(reply, &path, &st)) > 0)
                if (nr >= 0 && loop_device_parse_number(empty_to_dash(st.device)) == nr && !isempty(st.name)) {
                        char *s = strdup(st.name);

                        if (!s)
                                return error_errno(ENOMEM, "out of memory");
                        *ret_name = s;
                        return 0;
                }
        if (r < 0)
                return r;

        exit_code_set(EXIT_NOT_FOUND);
        return error_errno(ENOENT, "no mapping uses '%s'", target);
}

void strv_free(char **l) {
        if (!l)
                return;
        for (char **p = l; *p; p++)
                free(*p);
        free(l);
}

static int uint64_compare(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

        return x < y ? -1 : x > y;
}

int device_partitions(const char *device, char ***ret) {
        _cleanup_(closedirp) DIR *d = NULL;
        _cleanup_(freep) uint64_t *parts = NULL;
        size_t n = 0, allocated = 0;
        char dir[64], prefix[32];
        struct dirent *de;
        char **l;
        int nr;

        nr = loop_device_parse_number(empty_to_dash(device));
        if (nr >= 0) {
                (void) snprintf(dir, sizeof(dir), "/sys/class/block/loop%i", nr);
                (void) snprintf(prefix, sizeof(prefix), "loop%ip", nr);
                d = opendir(dir);
        }

        /* The kernel bounds the number of partitions of a disk (DISK_MAX_PARTS). A device that
         * went away meanwhile simply has none. */
        while (d && (de = readdir(d))) {
                const char *p = startswith(de->d_name, prefix);
                uint64_t m;

                if (!p || p[0] == '0' || safe_atou64(p, &m) < 0)
                        continue;

                if (n >= allocated) {
                        size_t k = MAX(allocated * 2, (size_t) 16);
                        uint64_t *q = reallocarray(parts, k, sizeof(uint64_t));

                        if (!q)
                                return -ENOMEM;
                        parts = q;
                        allocated = k;
                }
                parts[n++] = m;
        }

        if (n > 0)
                qsort(parts, n, sizeof(uint64_t), uint64_compare);

        l = calloc(n + 1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                if (asprintf(&l[i], "/dev/%s%" PRIu64, prefix, parts[i]) < 0) {
                        l[i] = NULL;
                        strv_free(l);
                        return -ENOMEM;
                }

        *ret = l;
        return (int) n;
}

int json_print(json_object *obj) {
        int flags = JSON_C_TO_STRING_NOSLASHESCAPE;
        const char *s;

        flags |= arg_json == JSON_PRETTY ? JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED : JSON_C_TO_STRING_PLAIN;
        s = json_object_to_json_string_ext(obj, flags);
        if (!s) {
                json_object_put(obj);
                return -ENOMEM;
        }
        (void) fputs(s, stdout);
        (void) fputc('\n', stdout);
        json_object_put(obj);
        return 0;
}

int json_add(json_object *obj, const char *key, json_object *value) {
        /* A NULL value is JSON's null; any other one that is NULL here failed to allocate. */
        if (json_object_object_add(obj, key, value) < 0) {
                json_object_put(value);
                return -ENOMEM;
        }
        return 0;
}

int json_add_string(json_object *obj, const char *key, const char *value) {
        json_object *v = NULL;

        if (value) {
                v = json_object_new_string(value);
                if (!v)
                        return -ENOMEM;
        }
        return json_add(obj, key, v);
}

int json_add_u64(json_object *obj, const char *key, uint64_t value) {
        json_object *v = json_object_new_uint64(value);

        return v ? json_add(obj, key, v) : -ENOMEM;
}

int json_add_bool(json_object *obj, const char *key, bool value) {
        json_object *v = json_object_new_boolean(value);

        return v ? json_add(obj, key, v) : -ENOMEM;
}
