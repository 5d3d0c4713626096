#!/usr/bin/python3
"""sdnotify.py - the receiving end of the sd_notify() protocol, as a service manager has it,
for the integration tests.

  sdnotify.py listen SOCKET OUTPUT [--bus-name NAME]
        binds an AF_UNIX datagram socket at the path SOCKET (pass it to a daemon as
        NOTIFY_SOCKET) and appends one line per datagram to OUTPUT, flushed at once:
            "PID PAYLOAD"
        PID is the sender's process id from SCM_CREDENTIALS ("?" if it came without
        credentials); newlines in PAYLOAD are written as "\\n", so a line is exactly one
        datagram. With --bus-name, as soon as a datagram that contains the assignment READY=1
        has been received (before the next datagram is read), asks the system bus who owns
        NAME and appends
            "# READY=1 from PID: NAME owned by OWNER-PID"   (or "...: NAME not owned")
        Runs until SIGTERM or SIGINT (exit 0); removes SOCKET then.
  sdnotify.py send SOCKET PAYLOAD
        sends PAYLOAD as one datagram to SOCKET (a barrier: once its line is in OUTPUT,
        every datagram sent to SOCKET before it is in OUTPUT too).

Usage errors and failures exit 2.
"""

import os
import signal
import socket
import struct
import sys


def die(msg):
    print(f"sdnotify: {msg}", file=sys.stderr)
    sys.exit(2)


class Stop(Exception):
    pass


def bus_owner_pid(bus, name):
    """The pid of NAME's owner on the system bus, or None if nobody owns it."""
    import dbus

    dbus_obj = bus.get_object("org.freedesktop.DBus", "/org/freedesktop/DBus")
    iface = dbus.Interface(dbus_obj, "org.freedesktop.DBus")
    try:
        return int(iface.GetConnectionUnixProcessID(name))
    except dbus.exceptions.DBusException as e:
        if e.get_dbus_name() == "org.freedesktop.DBus.Error.NameHasNoOwner":
            return None
        raise


def cmd_listen(args):
    bus_name = None
    if len(args) == 4 and args[2] == "--bus-name":
        bus_name = args[3]
    elif len(args) != 2:
        die("usage: listen SOCKET OUTPUT [--bus-name NAME]")
    path, output = args[0], args[1]

    bus = None
    if bus_name is not None:
        import dbus

        # Connected before the socket exists, so that the query after READY=1 is quick.
        bus = dbus.SystemBus()

    def on_signal(signo, frame):
        raise Stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    sock.bind(path)
    out = open(output, "a", buffering=1, encoding="utf-8", errors="backslashreplace")
    creds_size = struct.calcsize("3i")
    try:
        while True:
            data, ancdata, _flags, _addr = sock.recvmsg(65536, socket.CMSG_SPACE(creds_size))
            pid = "?"
            for level, kind, cdata in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(cdata) >= creds_size:
                    pid = str(struct.unpack("3i", cdata[:creds_size])[0])
            payload = data.decode("utf-8", errors="backslashreplace")
            out.write(f"{pid} {payload.replace(chr(10), chr(92) + 'n')}\n")
            if bus is not None and "READY=1" in payload.split("\n"):
                owner = bus_owner_pid(bus, bus_name)
                if owner is None:
                    out.write(f"# READY=1 from {pid}: {bus_name} not owned\n")
                else:
                    out.write(f"# READY=1 from {pid}: {bus_name} owned by {owner}\n")
    except Stop:
        pass
    finally:
        out.close()
        sock.close()
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def cmd_send(args):
    if len(args) != 2:
        die("usage: send SOCKET PAYLOAD")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.sendto(args[1].encode(), args[0])


COMMANDS = {"listen": cmd_listen, "send": cmd_send}


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        die(__doc__.strip())
    COMMANDS[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
