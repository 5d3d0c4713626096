/* Follows block device events from udev (or from the kernel when no udevd runs) on the loop. */
#include <errno.h>
#include <libudev.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "udev-monitor.h"
#include "util.h"

/* Recent events remembered for block_monitor_seen(): a mapping learns its device number from a
 * worker, possibly after udev's event for it was dispatched. */
#define RECENT_EVENTS 1024

typedef struct RecentEvent {
        dev_t devnum;
        uint64_t seqnum;
} RecentEvent;

struct BlockMonitor {
        struct udev *udev;
        struct udev_monitor *monitor;
        sd_event_source *source;
        bool is_udev;
        BlockEventHandler handler;
        void *userdata;
        RecentEvent recent[RECENT_EVENTS];
        size_t recent_next;
};

static int on_monitor_event(sd_event_source *s _unused_, int fd _unused_, uint32_t revents _unused_, void *userdata) {
        BlockMonitor *m = userdata;

        for (;;) {
                struct udev_device *dev = udev_monitor_receive_device(m->monitor);
                const char *action, *seq;
                uint64_t seqnum = 0;
                dev_t devnum;

                if (!dev)
                        break;

                action = udev_device_get_action(dev);
                devnum = udev_device_get_devnum(dev);
                seq = udev_device_get_property_value(dev, "SEQNUM");
                if (seq)
                        (void) safe_atou64(seq, &seqnum);

                if (action && devnum != 0) {
                        m->recent[m->recent_next] = (RecentEvent) { .devnum = devnum, .seqnum = seqnum };
                        m->recent_next = (m->recent_next + 1) % RECENT_EVENTS;
                        m->handler(action, devnum, seqnum, m->userdata);
                }
                udev_device_unref(dev);
        }
        return 0;
}

/* True if a udevd answers on its control socket. The socket file alone is not enough: a killed
 * udevd leaves it behind, and waiting for events from nobody would time out every Map. */
static bool udevd_is_running(void) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX, .sun_path = "/run/udev/control" };
        _cleanup_(closep) int fd = -EBADF;

        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return false;
        return connect(fd, (const struct sockaddr *) &sa, sizeof(sa)) >= 0 || errno == EAGAIN;
}

int block_monitor_new(sd_event *e, BlockEventHandler handler, void *userdata, BlockMonitor **ret) {
        BlockMonitor *m;
        int r;

        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->handler = handler;
        m->userdata = userdata;

        m->udev = udev_new();
        if (!m->udev) {
                r = -ENOMEM;
                goto fail;
        }

        m->is_udev = udevd_is_running();
        if (!m->is_udev)
                log_warning("systemd-udevd is not running: following kernel uevents instead; device symlinks and "
                            "udev properties will be missing.");

        m->monitor = udev_monitor_new_from_netlink(m->udev, m->is_udev ? "udev" : "kernel");
        if (!m->monitor) {
                r = -errno > 0 ? -errno : -EIO;
                goto fail;
        }

        r = udev_monitor_filter_add_match_subsystem_devtype(m->monitor, "block", NULL);
        if (r < 0)
                goto fail;
        /* Bursts of partition events must not overflow the socket. */
        (void) udev_monitor_set_receive_buffer_size(m->monitor, 16 * 1024 * 1024);

        r = udev_monitor_enable_receiving(m->monitor);
        if (r < 0)
                goto fail;

        r = sd_event_add_io(e, &m->source, udev_monitor_get_fd(m->monitor), EPOLLIN, on_monitor_event, m);
        if (r < 0)
                goto fail;
        (void) sd_event_source_set_description(m->source, "udev-monitor");

        *ret = m;
        return 0;

fail:
        block_monitor_free(m);
        return r;
}

BlockMonitor *block_monitor_free(BlockMonitor *m) {
        if (!m)
                return NULL;

        sd_event_source_disable_unref(m->source);
        udev_monitor_unref(m->monitor);
        udev_unref(m->udev);
        free(m);
        return NULL;
}

bool block_monitor_seen(const BlockMonitor *m, dev_t devnum, uint64_t after) {
        for (size_t i = 0; i < RECENT_EVENTS; i++)
                if (m->recent[i].devnum == devnum && m->recent[i].seqnum > after)
                        return true;
        return false;
}

bool block_monitor_is_udev(const BlockMonitor *m) {
        return m->is_udev;
}
