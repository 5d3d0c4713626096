/* Follows block device events from udev (or from the kernel when no udevd runs) on the loop. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

typedef struct BlockMonitor BlockMonitor;

/* Called on the loop thread for every block device event. */
typedef void (*BlockEventHandler)(const char *action, dev_t devnum, uint64_t seqnum, void *userdata);

/* Creates the monitor. With a running udevd it listens to udev's events (sent once the rules
 * have run); without, to the kernel's, and says so in the log. */
int block_monitor_new(sd_event *e, BlockEventHandler handler, void *userdata, BlockMonitor **ret);

BlockMonitor *block_monitor_free(BlockMonitor *m);

/* True if an event for devnum with a sequence number greater than after was seen recently. Covers
 * events that were dispatched before their waiter got to know the device number. */
bool block_monitor_seen(const BlockMonitor *m, dev_t devnum, uint64_t after);

/* True if events come from udev (false: kernel fallback). */
bool block_monitor_is_udev(const BlockMonitor *m);
