#!/usr/bin/python3
"""map-latency.py NAME SOURCE CYCLES: the map latency of fuseloopd as a client sees it, from the
MapURI call until a first 4 KiB O_DIRECT read of the new device has returned, all in this one
process: no process start is counted (on a small VM starting a process takes milliseconds,
more than the daemon's part). Each cycle unmaps again; after one warm-up cycle, prints the
median of CYCLES cycles in microseconds."""
import mmap
import os
import statistics
import sys
import time

import dbus

BUS_NAME = "org.proxmox.FuseLoop1"
MANAGER_PATH = "/org/proxmox/FuseLoop1"
MANAGER_IFACE = "org.proxmox.FuseLoop1"
MAPPING_IFACE = "org.proxmox.FuseLoop1.Mapping"
TIMEOUT = 120


def cycle(bus, manager, name, source, buf):
    t0 = time.monotonic_ns()
    path, device = manager.MapURI(name, source, dbus.Dictionary({}, signature="sv"), timeout=TIMEOUT)
    try:
        fd = os.open(str(device), os.O_RDONLY | os.O_DIRECT)
        try:
            if os.preadv(fd, [buf], 0) != len(buf):
                sys.exit(f"map-latency: short read from {device}")
        finally:
            os.close(fd)
        t1 = time.monotonic_ns()
    finally:
        mapping = dbus.Interface(bus.get_object(BUS_NAME, path), MAPPING_IFACE)
        mapping.Unmap(dbus.Dictionary({}, signature="sv"), timeout=TIMEOUT)
    return (t1 - t0) // 1000


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    name, source, cycles = sys.argv[1], sys.argv[2], int(sys.argv[3])
    bus = dbus.SystemBus()
    manager = dbus.Interface(bus.get_object(BUS_NAME, MANAGER_PATH), MANAGER_IFACE)
    buf = mmap.mmap(-1, 4096)  # page-aligned, as O_DIRECT wants
    samples = [cycle(bus, manager, name, source, buf) for _ in range(cycles + 1)][1:]
    print(int(statistics.median(samples)))


if __name__ == "__main__":
    main()
