/* Bus, object, interface, error and polkit names of the org.proxmox.FuseLoop1 API: the one place
 * they are spelled. */
#pragma once

#define FUSELOOP_BUS_NAME               "org.proxmox.FuseLoop1"
#define FUSELOOP_MANAGER_PATH           "/org/proxmox/FuseLoop1"
#define FUSELOOP_MANAGER_INTERFACE      "org.proxmox.FuseLoop1"
#define FUSELOOP_MAPPING_PATH_PREFIX    "/org/proxmox/FuseLoop1/mapping"
#define FUSELOOP_MAPPING_INTERFACE      "org.proxmox.FuseLoop1.Mapping"

#define FUSELOOP_ERROR_PREFIX           "org.proxmox.FuseLoop1.Error."
#define FUSELOOP_ERROR_INVALID_NAME     FUSELOOP_ERROR_PREFIX "InvalidName"
#define FUSELOOP_ERROR_ALREADY_MAPPED   FUSELOOP_ERROR_PREFIX "AlreadyMapped"
#define FUSELOOP_ERROR_NOT_FOUND        FUSELOOP_ERROR_PREFIX "NotFound"
#define FUSELOOP_ERROR_BUSY             FUSELOOP_ERROR_PREFIX "Busy"
#define FUSELOOP_ERROR_INVALID_SOURCE   FUSELOOP_ERROR_PREFIX "InvalidSource"
#define FUSELOOP_ERROR_INVALID_OPTION   FUSELOOP_ERROR_PREFIX "InvalidOption"
#define FUSELOOP_ERROR_NO_FREE_LOOP     FUSELOOP_ERROR_PREFIX "NoFreeLoopDevice"
#define FUSELOOP_ERROR_SETUP_FAILED     FUSELOOP_ERROR_PREFIX "SetupFailed"
#define FUSELOOP_ERROR_TIMEOUT          FUSELOOP_ERROR_PREFIX "Timeout"
#define FUSELOOP_ERROR_QUOTA_EXCEEDED   FUSELOOP_ERROR_PREFIX "QuotaExceeded"

/* polkit actions; the owner of a mapping and root need none to unmap it. */
#define FUSELOOP_POLKIT_MAP             "org.proxmox.fuseloop.map"
#define FUSELOOP_POLKIT_MAP_URI         "org.proxmox.fuseloop.map-uri"
#define FUSELOOP_POLKIT_UNMAP_OTHER     "org.proxmox.fuseloop.unmap-other"

/* Map options (a{sv} keys) and their D-Bus types. */
#define FUSELOOP_OPT_SIZE               "size"            /* t */
#define FUSELOOP_OPT_OFFSET             "offset"          /* t */
#define FUSELOOP_OPT_PARTITION_SCAN     "partition-scan"  /* b */
#define FUSELOOP_OPT_SECTOR_SIZE        "sector-size"     /* u */
#define FUSELOOP_OPT_DIRECT_IO          "direct-io"       /* b */
#define FUSELOOP_OPT_PROTOCOL           "protocol"        /* s */
#define FUSELOOP_OPT_EXPORT_NAME        "export-name"     /* s */
#define FUSELOOP_OPT_BIND_TO_CALLER     "bind-to-caller"  /* b */
#define FUSELOOP_OPT_TIMEOUT            "timeout"         /* u, seconds; 0: none */
#define FUSELOOP_OPT_UNTRUSTED          "untrusted"       /* b */
#define FUSELOOP_OPT_MOUNT_POINT        "mount-point"     /* s */
#define FUSELOOP_OPT_PASSTHROUGH        "passthrough"     /* b, default true */
/* Unmap options. */
#define FUSELOOP_OPT_LAZY               "lazy"            /* b */

/* MappingRemoved reasons. */
#define FUSELOOP_REASON_UNMAPPED        "unmapped"
#define FUSELOOP_REASON_DETACHED        "detached"
#define FUSELOOP_REASON_FAILED          "failed"
#define FUSELOOP_REASON_SHUTDOWN        "shutdown"
#define FUSELOOP_REASON_CALLER_GONE     "caller-gone"

#define FUSELOOP_NAME_MAX               128
#define FUSELOOP_DEFAULT_RUN_DIR        "/run/fuseloopd"
#define FUSELOOP_DEFAULT_IDLE_TIMEOUT_SEC 30u
#define FUSELOOP_DEFAULT_USER_QUOTA     16u
/* Each mapping costs fds, a loop device and kernel memory: bound what callers can make us hold. */
#define FUSELOOP_MAPPINGS_MAX           4096u
/* The longest read timeout a mapping may ask for: beyond an hour a timeout is no timeout. */
#define FUSELOOP_TIMEOUT_MAX_SEC        3600u
