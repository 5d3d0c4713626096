/* What the parts of fuseloopctl share: error reporting and exit codes, the bus connection, the
 * polkit agent, reading mapping objects, partitions, mounts and JSON output. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <json-c/json.h>
#include <systemd/sd-bus.h>

#include "macro.h"

/* Exit codes (fuseloopctl(1) documents them; scripts rely on them). */
enum {
        EXIT_OK = 0,
        EXIT_FAIL = 1,          /* any other failure */
        EXIT_USAGE = 2,         /* bad command line */
        EXIT_NOT_FOUND = 3,     /* no such mapping */
        EXIT_DENIED = 4,        /* refused: polkit or the bus said no */
        EXIT_BUSY = 5,          /* unmap: the device or its mount is in use */
        EXIT_TIMEOUT = 6,       /* wait: the time given ran out */
};

/* Map returns only once udev has processed the device and all its partitions, which can take a
 * while on a busy machine, and polkit may first wait up to two minutes for a password; Unmap may
 * wait for the kernel to release the backing file. */
#define CALL_TIMEOUT_USEC (UINT64_C(300) * UINT64_C(1000000))

/* Output format of list, status and monitor. */
typedef enum JsonMode {
        JSON_OFF,
        JSON_SHORT,
        JSON_PRETTY,
} JsonMode;

extern bool arg_ask_password;
extern JsonMode arg_json;

/* Prints one "fuseloopctl: ..." line on stderr, with %m standing for error. Returns -abs(error),
 * or -EINVAL when error is 0, so callers can return it. */
int error_errno(int error, const char *fmt, ...) _printf_(2, 3);

/* Sets the exit code the command ends with if it fails (the first one set wins; default 1). */
void exit_code_set(int code);
int exit_code_get(void);

/* Reports a failed bus call on one line and sets the exit code its error stands for. Our API's
 * errors carry a complete message that quotes the bad input; anything else gets context. A refusal
 * by polkit also says which action the call needs (polkit_action, NULL for calls that need none).
 * Returns a negative errno. */
int bus_error_report(const sd_bus_error *error, int r, const char *polkit_action, const char *fmt, ...)
        _printf_(4, 5);
int bus_create_error(int r);
int bus_parse_error(int r);

const char *empty_to_dash(const char *s);
const char *yes_no(int b);

/* Connects to the system bus (DBUS_SYSTEM_BUS_ADDRESS is honoured); polkit may ask for a password
 * on our calls when stdin is a terminal and --no-ask-password was not given. Returns 0 or -errno
 * after reporting it. */
int bus_connect(sd_bus **ret);

/* pkttyagent for the next call that may need polkit authorization (see the .c file). Returns its
 * pid, or 0 if none runs; polkit_agent_stop() ends it and returns 0. */
pid_t polkit_agent_start(void);
pid_t polkit_agent_stop(pid_t pid);
static inline void polkit_agent_stopp(pid_t *pid) {
        *pid = polkit_agent_stop(*pid);
}

/* The properties of a mapping object; strings point into the message they were read from. */
typedef struct MappingStatus {
        const char *name, *device, *backing_file, *source, *state, *mount_point, *source_error, *read_path;
        uint64_t size, offset, created_usec, bytes_read, read_requests, read_errors, timed_out_reads;
        uint64_t latency_p50, latency_p90, latency_p99, latency_max, kernel_read_ios, kernel_read_bytes;
        uint32_t sector_size, owner_uid, timeout_sec, reads_in_flight, kernel_in_flight;
        int partition_scan, direct_io, stalled, untrusted;
        double cache_hit_ratio;
} MappingStatus;

#define MAPPING_STATUS_INIT ((MappingStatus) { .cache_hit_ratio = -1 })

/* Reads an a{sv} of Mapping properties (a GetAll reply, one interface of GetManagedObjects, or the
 * changed properties of PropertiesChanged) into *st; properties we do not know are skipped.
 * Returns 0 or -errno after reporting it. */
int status_parse(sd_bus_message *m, MappingStatus *st);

/* Gets all properties of the mapping called name; *ret_reply holds the strings of *st. Returns 0,
 * -ENOENT (reported, exit code 3) if there is no such mapping, or another -errno (reported). */
int mapping_get(sd_bus *bus, const char *name, sd_bus_message **ret_reply, MappingStatus *st);

/* Calls GetManagedObjects and enters the reply at its array, for mappings_next(). Returns 0 or
 * -errno after reporting it. */
int mappings_get(sd_bus *bus, sd_bus_message **ret);

/* Reads the next mapping of a mappings_get() reply: its object path and properties (strings point
 * into the reply). Returns 1, 0 at the end, or -errno after reporting it. */
int mappings_next(sd_bus_message *reply, const char **ret_path, MappingStatus *st);

/* Finds the mapping whose name or device is target ("/dev/loopN"): the name in *ret_name
 * (malloc()ed). Returns 0, -ENOENT (reported, exit code 3), or -errno (reported). */
int mapping_resolve(sd_bus *bus, const char *target, char **ret_name);

/* The user name of uid, or the decimal uid when it has none. Returns 1 (a name) or 0 (a number)
 * and a malloc()ed string, or -ENOMEM. */
int owner_format(uid_t uid, char **ret);

/* The partitions of /dev/loopN as "/dev/loopNpM" in partition order: a NULL-terminated malloc()ed
 * array (empty when there are none or the device is unknown). Returns the count or -ENOMEM. */
int device_partitions(const char *device, char ***ret);
void strv_free(char **l);
static inline void strv_freep(char ***l) {
        strv_free(*l);
}

/* JSON output: prints obj (taking it) in arg_json's mode, one line for short. Returns 0 or
 * -ENOMEM. */
int json_print(json_object *obj);
/* Adds key: value to obj; a string NULL becomes null. They return -ENOMEM on failure. */
int json_add_string(json_object *obj, const char *key, const char *value);
int json_add_u64(json_object *obj, const char *key, uint64_t value);
int json_add_bool(json_object *obj, const char *key, bool value);
int json_add(json_object *obj, const char *key, json_object *value);
DEFINE_TRIVIAL_CLEANUP_FUNC(json_object *, json_object_put)

/* Mounts and the devices of a mapping (ctl-mount.c). */

/* Mounts device read-only at dir with mount(8). Returns 0 or -errno after reporting it. */
int mount_device(const char *device, const char *dir);

/* If dir is a mount point of device or one of its partitions, unmounts it (lazily: detaches it,
 * see umount2(2)). Returns 1 when it unmounted, 0 when there was nothing to unmount, or -errno
 * after reporting it (-EBUSY sets exit code 5). */
int unmount_mapping(const char *device, const char *dir, bool lazy);

/* monitor and wait (ctl-monitor.c). */
int verb_monitor(char **args);
int verb_wait(char **args);
extern bool arg_wait_removed;
extern uint64_t arg_wait_timeout_usec;  /* UINT64_MAX: no limit */

/* ctl-nbd.c: whether SOURCE is an NBD URI; connects to the server an URI names (nbd://HOST[:PORT]/EXPORT,
 * nbd+unix:///EXPORT?socket=PATH) and returns the socket and the export name. Errors are reported. */
bool source_is_nbd_uri(const char *s);
int nbd_uri_connect(const char *uri, int *ret_fd, char **ret_export);
