/* Loop devices: attach a file read-only, enable partition scanning, detach, and read their state
 * from sysfs. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* One instance of a loop device: /dev/loopN numbers are reused, so the instance is identified by
 * its number together with the kernel's disk sequence number. */
typedef struct LoopDevice {
        int nr;
        dev_t devnum;
        uint64_t diskseq;
        /* The disk's reads and read sectors (/sys/block/loopN/stat) before this attachment: the
         * kernel counts on across attachments of the same loopN. */
        uint64_t read_ios_base, read_sectors_base;
} LoopDevice;

#define LOOP_DEVICE_NULL ((LoopDevice) { .nr = -1 })

/* Runs on a worker: opens backing_path (a file of ours, so never on the loop thread), takes a free
 * loop device under flock(/dev/loop-control) with retries on EBUSY, configures it read-only in one
 * LOOP_CONFIGURE call (no partition scan yet), showing size_limit bytes (0: all) of backing_path
 * from offset on, and verifies what the kernel took. Writes the
 * device and the kernel's uevent sequence number from just before configuration (udev events of
 * this attach have a larger one). Returns 0, -EBUSY if no free device could be had, or -errno. */
int loop_device_attach(const char *backing_path, uint32_t block_size, bool direct_io, uint64_t offset,
                       uint64_t size_limit, LoopDevice *ret, uint64_t *ret_seqnum);

/* Runs on a worker: turns on partition scanning as a separate step (setting it in LOOP_CONFIGURE
 * makes partition nodes flap while udev probes the new disk). Writes the uevent sequence number
 * from just before the rescan. */
int loop_device_enable_partscan(const LoopDevice *d, uint64_t *ret_seqnum);

/* Runs on a worker: detaches d if it is still the instance we bound. Unless lazy, refuses with
 * -EBUSY when the disk or a partition is held exclusively (mounted). Returns 0 when the device is
 * detached (or was already), 1 when the kernel only set autoclear because someone still has it
 * open (it detaches at the last close). */
int loop_device_detach(const LoopDevice *d, bool lazy);

/* Runs on a worker: undoes the autoclear a detach left on a device that is still open. */
int loop_device_cancel_autoclear(const LoopDevice *d);

/* Runs anywhere (sysfs only): 1 if d is still the attachment we made, 0 if not (detached, or the
 * number now belongs to another instance), -errno on failure. */
int loop_device_is_bound(const LoopDevice *d);

/* Runs anywhere (sysfs only): fills ret for loop device nr if it still carries attachment
 * diskseq; -ENXIO if it does not (detached, or attached anew). */
int loop_device_find_attached(int nr, uint64_t diskseq, LoopDevice *ret);

typedef struct LoopPartition {
        unsigned partno;   /* node /dev/loop<nr>p<partno> */
        dev_t devnum;
} LoopPartition;

/* Lists d's partitions from sysfs. Returns the count (>= 0) and a malloc()ed array in *ret, or
 * -errno. */
int loop_device_list_partitions(const LoopDevice *d, LoopPartition **ret);

/* Reads the backing file of loop device nr from sysfs; -ENOENT when nothing is attached. */
int loop_device_read_backing_file(int nr, char **ret);

/* Parses "MAJ:MIN" as found in sysfs "dev" files. */
int parse_devnum(const char *s, dev_t *ret);

/* True if name is a partition entry of disk `disk` in sysfs ("loop3p1" for "loop3"); writes the
 * partition number. */
bool sysfs_partition_name_parse(const char *disk, const char *name, unsigned *ret_partno);

/* The kernel's current uevent sequence number. */
int uevent_seqnum_read(uint64_t *ret);

/* Clean-up at start-up, on a worker (resumed mappings are being served meanwhile): detaches
 * every loop device whose backing file lies under dir, except the n_keep attachments in keep.
 * Devices still open are left to detach at their last close. Returns the number of devices
 * handled. */
int loop_device_detach_all_under(const char *dir, const LoopDevice *keep, size_t n_keep);
