#!/usr/bin/python3
"""fdstore.py - the file descriptor store of a service manager, for the integration tests.

The daemon under test keeps its mappings' fds in the fd store of its service manager
(sd_pid_notify_with_fds() with FDSTORE=1 and FDNAME=, removed with FDSTOREREMOVE=1) and gets them
back when it is started again ($LISTEN_FDS, $LISTEN_PID, $LISTEN_FDNAMES, as sd_listen_fds(3)
documents). This plays that part of systemd, so that tests can kill the daemon and start it again
the way systemd would.

  fdstore.py store --state DIR [--max N]
        binds the notify socket DIR/notify (give it to the daemon as NOTIFY_SOCKET) and the
        control socket DIR/control, then keeps every fd sent with FDSTORE=1 under its FDNAME
        (several fds may share a name; at most N fds in all, default 4096, as
        FileDescriptorStoreMax=; beyond that they are closed and "full NAME" is logged) and closes
        those of a name on FDSTOREREMOVE=1. Like systemd with NotifyAccess=main, it takes
        messages only from the main process: the one that last started through "exec" below
        (messages of others are logged as "ignored PID" and their fds closed). After every change
        it rewrites DIR/names (the stored names, one per line, sorted; a name once per fd) and
        appends an event line to DIR/events:
            "ready PID" "status PID TEXT" "store NAME" "remove NAME" "full NAME" "ignored PID"
            "handed N to PID"
        Runs until SIGTERM or SIGINT; exits 0, closing what it keeps (as systemd does when the
        unit stops for good).
  fdstore.py exec --state DIR -- COMMAND [ARGS...]
        asks the store for a copy of every fd it keeps, puts them at fd 3, 4, ... (in the order
        they were stored), sets LISTEN_FDS, LISTEN_PID (its own pid, which COMMAND keeps),
        LISTEN_FDNAMES and NOTIFY_SOCKET, and execs COMMAND. With an empty store COMMAND gets no
        LISTEN_* variables. The store keeps its copies, as systemd does across a restart.

Usage errors and failures exit 2.
"""

import array
import fcntl
import os
import select
import signal
import socket
import struct
import sys

SCM_MAX_FD = 253


def die(msg):
    print(f"fdstore: {msg}", file=sys.stderr)
    sys.exit(2)


class Stop(Exception):
    pass


def parse_state(args):
    if len(args) < 2 or args[0] != "--state":
        die("usage: fdstore.py store|exec --state DIR ...")
    return args[1], args[2:]


def recv_fds(sock, bufsize, maxfds):
    """recvmsg() with room for maxfds fds and credentials: (data, fds, pid or None)."""
    creds_size = struct.calcsize("3i")
    fds = array.array("i")
    data, ancdata, _flags, _addr = sock.recvmsg(
        bufsize, socket.CMSG_SPACE(maxfds * fds.itemsize) + socket.CMSG_SPACE(creds_size))
    pid = None
    for level, kind, cdata in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(cdata) - (len(cdata) % fds.itemsize)
            fds.frombytes(cdata[:usable])
        elif level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(cdata) >= creds_size:
            pid = struct.unpack("3i", cdata[:creds_size])[0]
    for fd in fds:
        os.set_inheritable(fd, False)
    return data, list(fds), pid


class Store:
    def __init__(self, state, maxfds):
        self.state = state
        self.maxfds = maxfds
        self.entries = []  # (name, fd), in the order stored
        self.main_pid = None
        self.events = open(os.path.join(state, "events"), "a", buffering=1, encoding="utf-8")
        self.write_names()

    def event(self, line):
        self.events.write(line + "\n")

    def write_names(self):
        path = os.path.join(self.state, "names")
        with open(path + ".new", "w", encoding="utf-8") as f:
            for name in sorted(n for n, _ in self.entries):
                f.write(name + "\n")
        os.rename(path + ".new", path)

    def on_notify(self, data, fds, pid):
        if self.main_pid is None or pid != self.main_pid:
            self.event(f"ignored {pid}")
            for fd in fds:
                os.close(fd)
            return
        fields = {}
        for line in data.decode("utf-8", errors="replace").split("\n"):
            key, sep, value = line.partition("=")
            if sep:
                fields[key] = value
        name = fields.get("FDNAME", "stored")
        changed = False
        if fields.get("FDSTOREREMOVE") == "1":
            keep = []
            for n, fd in self.entries:
                if n == name:
                    os.close(fd)
                else:
                    keep.append((n, fd))
            self.entries = keep
            self.event(f"remove {name}")
            changed = True
        if fields.get("FDSTORE") == "1":
            for fd in fds:
                if len(self.entries) >= self.maxfds:
                    self.event(f"full {name}")
                    os.close(fd)
                else:
                    self.entries.append((name, fd))
                    self.event(f"store {name}")
                    changed = True
            fds = []
        for fd in fds:
            os.close(fd)
        if "STATUS" in fields:
            self.event(f"status {pid} {fields['STATUS']}")
        if fields.get("READY") == "1":
            self.event(f"ready {pid}")
        if changed:
            self.write_names()

    def on_control(self, conn):
        """A client says "take PID"; it gets the names and a copy of every fd, in order."""
        with conn:
            conn.settimeout(10)
            line = b""
            while not line.endswith(b"\n"):
                chunk = conn.recv(64)
                if not chunk:
                    return
                line += chunk
            words = line.decode().split()
            if len(words) != 2 or words[0] != "take" or not words[1].isdigit():
                conn.sendall(b"ERR bad request\n")
                return
            pid = int(words[1])
            self.main_pid = pid
            names = ":".join(n for n, _ in self.entries)
            conn.sendall(f"OK {len(self.entries)} {names}\n".encode())
            fds = [fd for _, fd in self.entries]
            for i in range(0, len(fds), SCM_MAX_FD):
                part = fds[i:i + SCM_MAX_FD]
                conn.sendmsg([b"F"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", part))])
            self.event(f"handed {len(fds)} to {pid}")

    def close(self):
        for _, fd in self.entries:
            os.close(fd)
        self.entries = []
        self.write_names()
        self.events.close()


def cmd_store(args):
    state, rest = parse_state(args)
    maxfds = 4096
    if rest[:1] == ["--max"] and len(rest) == 2 and rest[1].isdigit():
        maxfds = int(rest[1])
    elif rest:
        die("usage: store --state DIR [--max N]")

    def on_signal(signo, frame):
        raise Stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    notify_path = os.path.join(state, "notify")
    control_path = os.path.join(state, "control")
    for p in (notify_path, control_path):
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    notify.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    # Many mappings store their fds at once: a deep receive queue, as systemd's.
    notify.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    notify.bind(notify_path)
    control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    control.bind(control_path)
    control.listen(16)

    store = Store(state, maxfds)
    try:
        while True:
            ready, _, _ = select.select([notify, control], [], [])
            if notify in ready:
                data, fds, pid = recv_fds(notify, 65536, SCM_MAX_FD)
                store.on_notify(data, fds, pid)
            if control in ready:
                conn, _ = control.accept()
                try:
                    store.on_control(conn)
                except OSError as e:
                    store.event(f"control error {e}")
    except Stop:
        pass
    finally:
        store.close()
        for s, p in ((notify, notify_path), (control, control_path)):
            s.close()
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass


def cmd_exec(args):
    state, rest = parse_state(args)
    if len(rest) < 2 or rest[0] != "--":
        die("usage: exec --state DIR -- COMMAND [ARGS...]")
    command = rest[1:]

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(10)
    sock.connect(os.path.join(state, "control"))
    sock.sendall(f"take {os.getpid()}\n".encode())
    header = b""
    while not header.endswith(b"\n"):
        b = sock.recv(1)
        if not b:
            die("the store closed the connection")
        header += b
    words = header.decode().rstrip("\n").split(" ", 2)
    if words[0] != "OK":
        die(f"the store refused: {header.decode().strip()}")
    count = int(words[1])
    names = words[2].split(":") if count else []
    fds = []
    while len(fds) < count:
        _data, got, _pid = recv_fds(sock, 1, SCM_MAX_FD)
        if not got:
            die(f"the store sent {len(fds)} of {count} fds")
        fds.extend(got)
    sock.close()

    # Move them to 3, 4, ...: first above every target, then down, so that none is overwritten.
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3 + count) for fd in fds]
    for fd in fds:
        os.close(fd)
    for i, fd in enumerate(high):
        os.dup2(fd, 3 + i, inheritable=True)
        os.close(fd)

    env = dict(os.environ)
    for k in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
        env.pop(k, None)
    env["NOTIFY_SOCKET"] = os.path.join(state, "notify")
    if count:
        env["LISTEN_FDS"] = str(count)
        env["LISTEN_PID"] = str(os.getpid())
        env["LISTEN_FDNAMES"] = ":".join(names)
    os.execvpe(command[0], command, env)


COMMANDS = {"store": cmd_store, "exec": cmd_exec}


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        die(__doc__.strip())
    COMMANDS[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
