#!/usr/bin/python3
"""test-bus-fuzz.py - the bus client of test-bus-fuzz.sh: hostile calls to a running fuseloopd.

  test-bus-fuzz.py --seed N --seconds S --flood N --tmp DIR --daemon-pid PID --run-dir DIR

Sends, from one random generator seeded with --seed (printed, so a run can be repeated):

  * for --seconds seconds, random calls with up to 16 in flight: every method of the API (Map,
    MapURI, Unmap, List, the mapping objects' Unmap, Properties Get/GetAll/Set, Introspect,
    GetManagedObjects, Peer) with right and wrong signatures, missing and extra arguments, random
    strings (odd characters, printf directives, up to 4 MiB), known options with wrong types and
    values, unknown options, random variants, bad fds (pipes, sockets, a FIFO, directories,
    /dev/null, write-only and O_PATH fds, files too small, loop devices of the daemon's own
    mappings, handles that point past the message's fds), 250 fds in one message, random object
    paths below /org/proxmox/FuseLoop1, and calls on a second connection that goes away before
    the replies;
  * then a burst of 48 Map calls at once on one connection (each mapped or refused with
    LimitsExceeded: the daemon lets one connection have 16 calls wait for authorization), and a
    flood: --flood Map calls at once of valid small files over as many connections as that limit
    needs (List must keep answering meanwhile), every mapping checked, then as many Unmap calls;
  * last, two inputs that hurt the daemon once: a spoofed NameOwnerChanged signal about the
    caller of a bind-to-caller mapping (the mapping must stay), and an fd of one of the daemon's
    own FUSE files as a Map source (refused or served, but the daemon must keep answering).

Every reply must be a success with the declared signature (never for a call with another
signature, never for Properties.Set: every property is read-only) or an error named
org.proxmox.FuseLoop1.Error.* or org.freedesktop.DBus.Error.*; no call may go unanswered; the
daemon must stay the same process (--daemon-pid) owning the name. At the end every mapping that
the calls made is unmapped and List() must be empty. Prints a summary of calls and replies.

Exit status: 0 if all held, 1 otherwise (each violation is printed), 2 for usage errors.
"""

import argparse
import collections
import os
import random
import re
import socket
import stat
import sys
import time

from gi.repository import Gio, GLib

# The tests' own client library, for sd_bus_path_encode().
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from flbus import bus_path_encode  # noqa: E402

BUS_NAME = "org.proxmox.FuseLoop1"
MANAGER_PATH = "/org/proxmox/FuseLoop1"
MANAGER_IFACE = "org.proxmox.FuseLoop1"
MAPPING_IFACE = "org.proxmox.FuseLoop1.Mapping"
MAPPING_PREFIX = MANAGER_PATH + "/mapping"
PROPS_IFACE = "org.freedesktop.DBus.Properties"
INTROSPECT_IFACE = "org.freedesktop.DBus.Introspectable"
OM_IFACE = "org.freedesktop.DBus.ObjectManager"
PEER_IFACE = "org.freedesktop.DBus.Peer"
ALLOWED_ERRORS = ("org.proxmox.FuseLoop1.Error.", "org.freedesktop.DBus.Error.")
# Errors that mean the daemon did not answer or went away: never acceptable.
FATAL_ERRORS = ("org.freedesktop.DBus.Error.NoReply", "org.freedesktop.DBus.Error.ServiceUnknown",
                "org.freedesktop.DBus.Error.NameHasNoOwner", "org.freedesktop.DBus.Error.Disconnected",
                "org.freedesktop.DBus.Error.TimedOut")

# (interface, member) -> (input signature, output signature)
DECLARED = {
    (MANAGER_IFACE, "Map"): ("sha{sv}", "os"),
    (MANAGER_IFACE, "MapURI"): ("ssa{sv}", "os"),
    (MANAGER_IFACE, "Unmap"): ("sa{sv}", ""),
    (MANAGER_IFACE, "List"): ("", "a(sossts)"),
    (MAPPING_IFACE, "Unmap"): ("a{sv}", ""),
    (PROPS_IFACE, "Get"): ("ss", "v"),
    (PROPS_IFACE, "GetAll"): ("s", "a{sv}"),
    (PROPS_IFACE, "Set"): ("ssv", None),  # None: must never succeed
    (INTROSPECT_IFACE, "Introspect"): ("", "s"),
    (OM_IFACE, "GetManagedObjects"): ("", "a{oa{sa{sv}}}"),
    (PEER_IFACE, "Ping"): ("", ""),
    (PEER_IFACE, "GetMachineId"): ("", "s"),
}

MAP_OPTIONS = {"size": "t", "offset": "t", "partition-scan": "b", "sector-size": "u", "direct-io": "b",
               "protocol": "s", "export-name": "s", "bind-to-caller": "b", "timeout": "u"}
PROPERTIES = ["Name", "Device", "BackingFile", "Size", "Offset", "SectorSize", "PartitionScan", "DirectIO",
              "Source", "State", "OwnerUID", "CreatedUSec", "BytesRead", "ReadRequests", "ReadErrors",
              "Timeout", "Stalled", "TimedOutReads"]

CALL_TIMEOUT_MS = 180 * 1000    # above the daemon's own udev timeout (60 s), with room for sanitizers
STALL_SECONDS = 90              # calls in flight and no reply for this long: the daemon hangs
MAX_INFLIGHT = 16
MAX_RANDOM_MAPPINGS = 12        # random calls stop creating mappings above this many
MANY_FDS = 250                  # below Linux's SCM_MAX_FD (253) per message

ODD_STRINGS = [
    "", " ", ".", "..", "...", "/", "//", "-", "+", "@", ":", "_", "a b", " a", "a ", "a\tb", "a\nb", "a\rb",
    "a\x01b", "\x7f", "a/b", "../x", "./x", "x/..", "%s%s%s%n%n", "%x" * 20, "%99999999d", "\\", "\\x00",
    "'", '"', "`id`", "$(id)", ";", "*", "?", "[", "]", "{}", "\u00e4", "\u202e", "\u0301", "\ufeff", "\ufffd",
    "\U0001f600", "\u4e2d\u6587", "a" * 128, "a" * 129, "." + "a" * 127, "a" * 4096, "/dev/loop0", "/dev/loop",
    "/dev/loop-control", "/dev/loop4294967296", "/dev/loop-1", "/dev/loop00", "/dev/../dev/loop0", "/dev/",
    "/dev/sda", "/dev/null", "loop0", "/dev/fuse", "file:///", "file://", "nbd://localhost/x", "vm-100-disk-0",
]


def log(msg):
    print(msg, flush=True)


class Violation(Exception):
    pass


class Fuzzer:
    def __init__(self, args):
        self.args = args
        self.rnd = random.Random(args.seed)
        self.tmp = args.tmp
        self.conn = Gio.bus_get_sync(Gio.BusType.SYSTEM, None)
        self.dest = self.name_owner()
        self.loop = GLib.MainLoop()
        self.inflight = 0
        self.last_reply = time.monotonic()
        self.violations = []
        self.calls = collections.Counter()
        self.replies = collections.Counter()
        self.examples = {}      # error name -> (call, message) of its first occurrence
        self.mappings = {}      # name -> (object path, device) for every mapping a reply announced
        self.counter = 0
        self.fd_pool = {}
        self.make_sources()

    # ------------------------------------------------------------------ setup --

    def name_owner(self):
        r = self.conn.call_sync("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                                "GetNameOwner", GLib.Variant("(s)", (BUS_NAME,)), GLib.VariantType("(s)"),
                                Gio.DBusCallFlags.NO_AUTO_START, 10000, None)
        return r.unpack()[0]

    def owner_pid(self):
        r = self.conn.call_sync("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                                "GetConnectionUnixProcessID", GLib.Variant("(s)", (BUS_NAME,)),
                                GLib.VariantType("(u)"), Gio.DBusCallFlags.NO_AUTO_START, 10000, None)
        return r.unpack()[0]

    def make_sources(self):
        """Files and other things to pass as sources, made once."""
        t = self.tmp
        self.data_file = os.path.join(t, "fuzz-data.bin")
        with open(self.data_file, "wb") as f:
            f.write(os.urandom(1 << 20))
        self.tiny_file = os.path.join(t, "tiny.bin")
        with open(self.tiny_file, "wb") as f:
            f.write(b"x" * 100)
        self.empty_file = os.path.join(t, "empty.bin")
        open(self.empty_file, "wb").close()
        self.fifo = os.path.join(t, "fifo")
        os.mkfifo(self.fifo)
        self.symlink = os.path.join(t, "link.bin")
        os.symlink(self.data_file, self.symlink)
        self.subdir = os.path.join(t, "dir")
        os.mkdir(self.subdir)
        self.weird_file = os.path.join(t, "we ird%20\u00e4 %s.bin")
        with open(self.weird_file, "wb") as f:
            f.write(os.urandom(8192))

        def keep(kind, fd):
            self.fd_pool[kind] = fd

        keep("file", os.open(self.data_file, os.O_RDONLY | os.O_CLOEXEC))
        keep("weird-file", os.open(self.weird_file, os.O_RDONLY | os.O_CLOEXEC))
        keep("tiny-file", os.open(self.tiny_file, os.O_RDONLY | os.O_CLOEXEC))
        keep("empty-file", os.open(self.empty_file, os.O_RDONLY | os.O_CLOEXEC))
        keep("write-only", os.open(self.data_file, os.O_WRONLY | os.O_CLOEXEC))
        keep("read-write", os.open(self.data_file, os.O_RDWR | os.O_CLOEXEC))
        keep("o-path", os.open(self.data_file, os.O_PATH | os.O_CLOEXEC))
        keep("directory", os.open(self.subdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        keep("dev-null", os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC))
        keep("dev-zero", os.open("/dev/zero", os.O_RDONLY | os.O_CLOEXEC))
        keep("fifo", os.open(self.fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC))
        r, w = os.pipe2(os.O_CLOEXEC)
        keep("pipe-read", r)
        keep("pipe-write", w)
        r2, w2 = os.pipe2(os.O_CLOEXEC)
        os.close(w2)
        keep("pipe-closed-writer", r2)
        a, b = socket.socketpair()
        keep("socket", a.detach())
        keep("socket-peer", b.detach())
        keep("memfd", os.memfd_create("fuzz", os.MFD_CLOEXEC))
        os.write(self.fd_pool["memfd"], os.urandom(4096))
        keep("eventfd", os.eventfd(0, os.EFD_CLOEXEC))
        keep("proc-file", os.open("/proc/self/status", os.O_RDONLY | os.O_CLOEXEC))
        unlinked = os.path.join(t, "unlinked.bin")
        with open(unlinked, "wb") as f:
            f.write(os.urandom(4096))
        keep("unlinked-file", os.open(unlinked, os.O_RDONLY | os.O_CLOEXEC))
        os.unlink(unlinked)

    # ------------------------------------------------------------- random data --

    def odd_string(self):
        r = self.rnd.random()
        if r < 0.5:
            return self.rnd.choice(ODD_STRINGS)
        if r < 0.8:
            n = self.rnd.randint(1, 40)
            return "".join(self.rnd.choice("aZ09._:@+-/ %\\\t\n\u00e4\u202e\U0001f600$'\"*?") for _ in range(n))
        if r < 0.97:
            return self.rnd.choice("ab.-%") * self.rnd.randint(100, 70000)
        return self.rnd.choice("ab/\u00e4") * self.rnd.randint(1 << 20, 4 << 20)

    def fresh_name(self):
        self.counter += 1
        return "fz-%d-%s" % (self.counter, self.rnd.choice(["a", "b.c", "d:e", "f@g", "h+i", "j_k", "L-M"]))

    def any_name(self):
        r = self.rnd.random()
        if r < 0.35 and len(self.mappings) < MAX_RANDOM_MAPPINGS:
            return self.fresh_name()
        if r < 0.55 and self.mappings:
            return self.rnd.choice(sorted(self.mappings))
        return self.odd_string()

    def object_path(self):
        r = self.rnd.random()
        if r < 0.25 and self.mappings:
            return self.mappings[self.rnd.choice(sorted(self.mappings))][0]
        if r < 0.45:
            return MAPPING_PREFIX + "/" + bus_path_encode(self.odd_string()[:200])
        choices = [MANAGER_PATH, MAPPING_PREFIX, MAPPING_PREFIX + "/_", MAPPING_PREFIX + "/_2e",
                   MAPPING_PREFIX + "/a/b", MAPPING_PREFIX + "/_zz", MAPPING_PREFIX + "/_2", MANAGER_PATH + "/x",
                   "/", "/org", "/org/proxmox", MANAGER_PATH + "/mapping/" + "a" * 5000,
                   MANAGER_PATH + "/" + "/".join("p%d" % i for i in range(60))]
        if r < 0.85:
            return self.rnd.choice(choices)
        return MANAGER_PATH + "/" + "/".join(
            "".join(self.rnd.choice("abcXYZ019_") for _ in range(self.rnd.randint(1, 12)))
            for _ in range(self.rnd.randint(1, 6)))

    def random_type(self, depth=0):
        basics = "ybnqiuxtdsogh"
        if depth >= 3 or self.rnd.random() < 0.6:
            return self.rnd.choice(basics)
        k = self.rnd.random()
        if k < 0.3:
            return "a" + self.random_type(depth + 1)
        if k < 0.5:
            return "a{" + self.rnd.choice("ybnqiuxtdsog") + self.random_type(depth + 1) + "}"
        if k < 0.8:
            return "(" + "".join(self.random_type(depth + 1) for _ in range(self.rnd.randint(1, 3))) + ")"
        return "v"

    @staticmethod
    def split_type(sig, i=0):
        """The end of the single complete type that starts at sig[i]."""
        c = sig[i]
        if c == "a":
            return Fuzzer.split_type(sig, i + 1)
        if c in "({":
            close = ")" if c == "(" else "}"
            j = i + 1
            while sig[j] != close:
                j = Fuzzer.split_type(sig, j)
            return j + 1
        return i + 1

    def random_value(self, t, n_fds=0):
        """A python value for GLib.Variant(t, value)."""
        rnd = self.rnd
        c = t[0]
        ranges = {"y": (0, 255), "n": (-(1 << 15), (1 << 15) - 1), "q": (0, (1 << 16) - 1),
                  "i": (-(1 << 31), (1 << 31) - 1), "u": (0, (1 << 32) - 1),
                  "x": (-(1 << 63), (1 << 63) - 1), "t": (0, (1 << 64) - 1)}
        if c in ranges:
            lo, hi = ranges[c]
            return rnd.choice([v for v in (lo, hi, 0, 1, 512, 4096) if lo <= v <= hi] + [rnd.randint(lo, hi)])
        if c == "b":
            return rnd.random() < 0.5
        if c == "d":
            return rnd.choice([0.0, -1.5, 1e308, float("inf"), float("nan"), rnd.random()])
        if c == "s":
            s = self.odd_string()
            return s if len(s) < 100000 else s[:100000]
        if c == "o":
            return self.object_path()
        if c == "g":
            return "".join(self.random_type() for _ in range(rnd.randint(0, 3)))
        if c == "h":
            # An index into the message's fds; sometimes past their end.
            return rnd.randint(0, n_fds + 2)
        if c == "v":
            inner = self.random_type(1)
            return GLib.Variant(inner, self.random_value(inner, n_fds))
        if c == "a":
            elem = t[1:]
            n = rnd.randint(0, 4)
            if elem[0] == "{":
                kt = elem[1]
                vt = elem[2:Fuzzer.split_type(elem, 2)]
                return {self.random_value(kt, n_fds): self.random_value(vt, n_fds) for _ in range(n)}
            if elem == "y":
                return bytes(rnd.randint(0, 255) for _ in range(rnd.randint(0, 64)))
            return [self.random_value(elem, n_fds) for _ in range(n)]
        if c == "(":
            out, i = [], 1
            while t[i] != ")":
                j = Fuzzer.split_type(t, i)
                out.append(self.random_value(t[i:j], n_fds))
                i = j
            return tuple(out)
        raise ValueError("type " + t)

    def random_signature(self):
        return "".join(self.random_type() for _ in range(self.rnd.randint(0, 4)))

    def options(self, unmap=False, n_fds=0, safe=False):
        """An a{sv} dict: mostly right, often wrong. safe: only options a valid mapping may take."""
        rnd = self.rnd
        opts = {}
        if safe:
            if rnd.random() < 0.3:
                opts["direct-io"] = GLib.Variant("b", rnd.random() < 0.5)
            if rnd.random() < 0.2:
                opts["sector-size"] = GLib.Variant("u", rnd.choice([512, 1024, 2048, 4096]))
            if rnd.random() < 0.2:
                opts["offset"] = GLib.Variant("t", rnd.choice([0, 512, 65536]))
            if rnd.random() < 0.1:
                opts["bind-to-caller"] = GLib.Variant("b", True)
            return opts
        known = dict(MAP_OPTIONS) if not unmap else {"lazy": "b"}
        for _ in range(rnd.choice([0, 1, 2, 3, 5, 33, 40])):
            k = rnd.random()
            if k < 0.5:
                key = rnd.choice(sorted(known))
                if rnd.random() < 0.6:
                    t = known[key]
                else:
                    t = self.random_type()
            elif k < 0.8:
                key = rnd.choice(["", "Size", "lazy", "no-such-option", "size ", "offset\n", "timeout",
                                  "partition_scan", "\u00e4"] + list(MAP_OPTIONS))
                t = self.random_type()
            else:
                key = self.odd_string()
                if len(key) > 1 << 20:
                    key = key[:1 << 20]
                t = self.random_type()
            if t == "t" and rnd.random() < 0.5:
                value = rnd.choice([0, 511, 512, 1 << 20, (1 << 64) - 1, (1 << 64) - 512, (1 << 63)])
            elif t == "u" and rnd.random() < 0.5:
                value = rnd.choice([0, 1, 256, 512, 3000, 4096, 8192, 3600, 3601, (1 << 32) - 1])
            elif t == "s" and rnd.random() < 0.3:
                value = rnd.choice(["raw", "nbd", "RAW", "", "e" * 4096, "e" * 4097, "x" * (1 << 20)])
            else:
                value = self.random_value(t, n_fds)
            opts[key] = GLib.Variant(t, value)
        return opts

    def source_fd(self):
        """A source fd kind and the fd: usually something that must be refused."""
        kinds = sorted(self.fd_pool)
        r = self.rnd.random()
        if r < 0.1 and self.mappings:
            # The loop device of one of the daemon's own mappings. (Its FUSE files are tried once,
            # in hazards(): one hangs the daemon today.)
            name = self.rnd.choice(sorted(self.mappings))
            path = self.mappings[name][1]
            try:
                return "own:" + path, os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK), True
            except OSError:
                pass
        kind = self.rnd.choice(kinds)
        return kind, self.fd_pool[kind], False

    # ------------------------------------------------------------------- calls --

    def send(self, path, iface, member, sig, values, fds=(), conn=None, on_success=None, what=None,
             check=True, on_reply=None, on_error=None):
        """Sends one call; the reply is checked in on_reply(), then on_success(result) runs for a
        success, on_error(name, message) for an error and on_reply() for any reply."""
        conn = conn or self.conn
        msg = self.new_call(path, iface, member, sig, values, fds)
        what = what or "%s.%s(%s) on %s" % (iface or "-", member, sig, path[:120])
        self.calls["%s.%s" % (iface or "-", member)] += 1
        self.inflight += 1
        ctx = {"path": path, "iface": iface, "member": member, "sig": sig, "on_success": on_success,
               "on_reply": on_reply, "on_error": on_error, "what": what, "check": check, "sent": time.monotonic()}
        conn.send_message_with_reply(msg, Gio.DBusSendMessageFlags.NONE, CALL_TIMEOUT_MS, None,
                                     self.on_reply, ctx)

    def violation(self, text):
        log("VIOLATION: " + text)
        self.violations.append(text)

    def on_reply(self, conn, res, ctx):
        self.inflight -= 1
        self.last_reply = time.monotonic()
        try:
            self.check_reply(conn, res, ctx)
        except Exception as e:  # a bug of this script must fail the test too
            self.violation("%s: the reply could not be checked: %r" % (ctx["what"][:300], e))
        finally:
            if ctx["on_reply"]:
                ctx["on_reply"]()

    def check_reply(self, conn, res, ctx):
        what = ctx["what"]
        try:
            reply = conn.send_message_with_reply_finish(res)
        except GLib.Error as e:
            if ctx["check"]:
                self.violation("%s: no reply: %s" % (what[:300], e.message))
            self.replies["(no reply)"] += 1
            return
        if not ctx["check"]:
            self.replies["(unchecked)"] += 1
            return
        if reply.get_message_type() == Gio.DBusMessageType.ERROR:
            name = reply.get_error_name() or ""
            self.replies[name] += 1
            body = reply.get_body()
            text = body.unpack()[0] if body is not None and body.get_type_string().startswith("(s") else ""
            self.examples.setdefault(name, (what[:160], text[:200]))
            if not name.startswith(ALLOWED_ERRORS) or name in FATAL_ERRORS:
                self.violation("%s: error %s: %s" % (what[:300], name, text[:300]))
            # The daemon quotes at most the start of a bad input (sd-bus's own errors quote the
            # whole object path, interface or member, as long as the caller made them).
            if name.startswith(ALLOWED_ERRORS[0]) and len(text) > 1024:
                self.violation("%s: error message of %d characters" % (what[:300], len(text)))
            if ctx["on_error"]:
                ctx["on_error"](name, text)
            return
        sig = reply.get_signature() or ""
        self.replies["(success %s.%s)" % (ctx["iface"] or "-", ctx["member"])] += 1
        declared = DECLARED.get((ctx["iface"], ctx["member"]))
        if ctx["iface"] == PEER_IFACE and declared:
            # sd-bus answers org.freedesktop.DBus.Peer itself, whatever the arguments.
            declared = (ctx["sig"], declared[1])
        elif ctx["iface"] == PROPS_IFACE and declared and ctx["sig"].startswith(declared[0]):
            # sd-bus answers org.freedesktop.DBus.Properties itself too: it reads the arguments it
            # needs and ignores any after them (seen for GetAll(st)). The reply is checked as usual.
            declared = (ctx["sig"], declared[1])
        if declared is None or declared[0] != ctx["sig"]:
            self.violation("%s: succeeded (reply signature '%s'), but this call is not in the API" % (what[:300], sig))
            return
        if declared[1] is None or declared[1] != sig:
            self.violation("%s: succeeded with signature '%s', expected %s" % (
                what[:300], sig, "an error" if declared[1] is None else "'%s'" % declared[1]))
            return
        if ctx["on_success"]:
            body = reply.get_body()
            ctx["on_success"](body.unpack() if body is not None else ())

    def mapped(self, name):
        def done(result):
            path, device = result
            if path != MAPPING_PREFIX + "/" + bus_path_encode(name):
                self.violation("Map('%s') returned object path %s" % (name, path))
            if not re.fullmatch(r"/dev/loop[0-9]+", device):
                self.violation("Map('%s') returned device '%s'" % (name, device))
            self.mappings[name] = (path, device)
        return done

    def unmapped(self, name):
        def done(_result):
            self.mappings.pop(name, None)
        return done

    def call_map(self):
        rnd = self.rnd
        name = self.any_name()
        valid_source = rnd.random() < 0.3 and len(self.mappings) < MAX_RANDOM_MAPPINGS
        if valid_source:
            kind, fd, own = rnd.choice(["file", "weird-file", "memfd", "unlinked-file", "read-write"]), None, False
            fd = self.fd_pool[kind]
        else:
            kind, fd, own = self.source_fd()
        opts = self.options(safe=valid_source and rnd.random() < 0.8, n_fds=1)
        # 'h' is an index into the message's fds; -1 is 0xffffffff on the wire.
        handle = 0 if rnd.random() < 0.9 else rnd.choice([1, 2, 100, (1 << 31) - 1, -1])
        try:
            self.send(MANAGER_PATH, MANAGER_IFACE, "Map", "sha{sv}", [name, handle, opts], fds=[fd],
                      on_success=self.mapped(name),
                      what="Map('%s', %s fd, handle %d, %d options)" % (name[:80], kind, handle, len(opts)))
        finally:
            if own:
                os.close(fd)
        if name.startswith("fz-") and rnd.random() < 0.2:
            # Unmap while the Map may still be attaching.
            self.send(MANAGER_PATH, MANAGER_IFACE, "Unmap", "sa{sv}", [name, {}], on_success=self.unmapped(name))

    def call_map_uri(self):
        rnd = self.rnd
        name = self.any_name()
        uri = rnd.choice([
            self.data_file, "file://" + self.data_file, "file://" + self.weird_file.replace("%", "%25")
            .replace(" ", "%20"), self.weird_file, self.tiny_file, self.empty_file, self.fifo, self.symlink,
            self.subdir, "/dev/null", "/dev/zero", "/proc/self/status", self.tmp + "/missing",
            self.tmp + "//x", self.tmp + "/./x", self.tmp + "/../x", "file://" + self.tmp + "/%2e%2e/x",
            "file://" + self.data_file.replace("/", "%2f"), "file:///%00", "relative", "",
            "nbd://localhost/export", "nbd+unix:///x?socket=/run/x", "http://x/y",
        ] + [self.odd_string()])
        if len(self.mappings) >= MAX_RANDOM_MAPPINGS and uri in (self.data_file, self.weird_file):
            uri = self.symlink
        valid = uri in (self.data_file, "file://" + self.data_file, self.weird_file)
        opts = self.options(safe=valid and rnd.random() < 0.8)
        self.send(MANAGER_PATH, MANAGER_IFACE, "MapURI", "ssa{sv}", [name, uri, opts],
                  on_success=self.mapped(name),
                  what="MapURI('%s', '%s', %d options)" % (name[:80], uri[:120], len(opts)))

    def call_unmap(self):
        rnd = self.rnd
        r = rnd.random()
        if r < 0.4 and self.mappings:
            name = rnd.choice(sorted(self.mappings))
            what = rnd.choice([name, self.mappings[name][1]])
        elif r < 0.6:
            what = "/dev/loop%d" % rnd.choice([0, 1, 7, 255, 256, 1 << 20, (1 << 31) - 1])
        else:
            what = self.odd_string()
        opts = {} if rnd.random() < 0.5 else self.options(unmap=True)
        name = next((n for n, v in self.mappings.items() if what in (n, v[1])), None)
        self.send(MANAGER_PATH, MANAGER_IFACE, "Unmap", "sa{sv}", [what, opts],
                  on_success=self.unmapped(name) if name else None,
                  what="Unmap('%s', %d options)" % (what[:80], len(opts)))

    def call_object_unmap(self):
        path = self.object_path()
        opts = {} if self.rnd.random() < 0.5 else self.options(unmap=True)
        name = next((n for n, v in self.mappings.items() if v[0] == path), None)
        self.send(path, MAPPING_IFACE, "Unmap", "a{sv}", [opts],
                  on_success=self.unmapped(name) if name else None)

    def call_properties(self):
        rnd = self.rnd
        path = self.object_path()
        iface = rnd.choice([MAPPING_IFACE, MANAGER_IFACE, PROPS_IFACE, OM_IFACE, "", "x.y", "org.proxmox"])
        prop = rnd.choice(PROPERTIES + ["", "name", "Nope", self.odd_string()[:1000]])
        k = rnd.random()
        if k < 0.4:
            self.send(path, PROPS_IFACE, "Get", "ss", [iface, prop])
        elif k < 0.7:
            self.send(path, PROPS_IFACE, "GetAll", "s", [iface])
        else:
            t = rnd.choice(["s", "t", "u", "b", self.random_type()])
            self.send(path, PROPS_IFACE, "Set", "ssv", [iface, prop, GLib.Variant(t, self.random_value(t))])

    def call_misc(self):
        rnd = self.rnd
        k = rnd.random()
        if k < 0.3:
            self.send(self.object_path(), INTROSPECT_IFACE, "Introspect", "", [])
        elif k < 0.5:
            self.send(rnd.choice([MANAGER_PATH, self.object_path()]), OM_IFACE, "GetManagedObjects", "", [])
        elif k < 0.7:
            self.send(MANAGER_PATH, MANAGER_IFACE, "List", "", [])
        elif k < 0.8:
            self.send(self.object_path(), PEER_IFACE, rnd.choice(["Ping", "GetMachineId"]), "", [])
        else:
            # Unknown members and interfaces, and no interface at all.
            self.send(self.object_path(), rnd.choice([None, MANAGER_IFACE, MAPPING_IFACE, "org.example.Nope"]),
                      rnd.choice(["Map", "List", "Unmap", "Nope", "Introspect", "Get"]), "", [])

    def call_wrong_signature(self):
        """A known member with a random body, or the right one with an argument missing or extra."""
        rnd = self.rnd
        iface, member = rnd.choice(sorted(k for k in DECLARED))
        declared = DECLARED[(iface, member)][0]
        path = MANAGER_PATH if iface == MANAGER_IFACE else self.object_path()
        k = rnd.random()
        if k < 0.4:
            sig = self.random_signature()
        elif k < 0.7 and declared:
            parts, i = [], 0
            while i < len(declared):
                j = Fuzzer.split_type(declared, i)
                parts.append(declared[i:j])
                i = j
            del parts[rnd.randrange(len(parts))]
            sig = "".join(parts)
        else:
            sig = declared + self.random_type()
        n_fds = rnd.choice([0, 0, 1, 3])
        values = []
        i = 0
        while i < len(sig):
            j = Fuzzer.split_type(sig, i)
            values.append(self.random_value(sig[i:j], n_fds))
            i = j
        fds = [self.fd_pool[rnd.choice(sorted(self.fd_pool))] for _ in range(n_fds)]
        self.send(path, iface, member, sig, values, fds=fds)

    def call_many_fds(self):
        """250 fds in one message: as extra arguments, inside options, or just attached."""
        rnd = self.rnd
        kinds = sorted(self.fd_pool)
        fds = [self.fd_pool[rnd.choice(kinds)] for _ in range(MANY_FDS)]
        k = rnd.random()
        name = self.fresh_name() if len(self.mappings) < MAX_RANDOM_MAPPINGS else self.odd_string()[:100]
        if k < 0.3:
            self.send(MANAGER_PATH, MANAGER_IFACE, "Map", "sha{sv}ah", [name, 0, {}, list(range(MANY_FDS))],
                      fds=fds, what="Map with an extra 'ah' of %d fds" % MANY_FDS)
        elif k < 0.6:
            opts = {"fd%d" % i: GLib.Variant("h", i) for i in range(MANY_FDS)}
            self.send(MANAGER_PATH, MANAGER_IFACE, "Map", "sha{sv}", [name, rnd.randrange(MANY_FDS), opts],
                      fds=fds, on_success=self.mapped(name), what="Map with %d 'h' options" % MANY_FDS)
        else:
            # A valid Map whose handle picks the data file out of 250 attached fds.
            fds[-1] = self.fd_pool["file"]
            self.send(MANAGER_PATH, MANAGER_IFACE, "Map", "sha{sv}", [name, MANY_FDS - 1, {}], fds=fds,
                      on_success=self.mapped(name), what="Map('%s') with %d fds attached" % (name[:80], MANY_FDS))

    def call_abandoned(self):
        """A second connection sends Map calls and goes away before the replies."""
        try:
            conn = self.new_connection()
        except GLib.Error as e:
            self.violation("cannot open a second bus connection: " + e.message)
            return
        for _ in range(self.rnd.randint(1, 4)):
            name = self.fresh_name()
            opts = {"bind-to-caller": GLib.Variant("b", True)} if self.rnd.random() < 0.7 else {}
            # Map calls without bind-to-caller may create mappings that nobody hears of: the
            # final clean-up unmaps whatever List() shows.
            self.send(MANAGER_PATH, MANAGER_IFACE, "Map", "sha{sv}", [name, 0, opts], fds=[self.fd_pool["file"]],
                      conn=conn, check=False)
        conn.flush_sync(None)
        conn.close_sync(None)

    def spoof_name_owner_changed(self):
        """A NameOwnerChanged signal that says we are gone, from us rather than the bus: the
        daemon must not believe it (bind-to-caller mappings of ours must stay)."""
        me = self.conn.get_unique_name()
        try:
            self.conn.emit_signal(self.dest, "/org/freedesktop/DBus", "org.freedesktop.DBus", "NameOwnerChanged",
                                  GLib.Variant("(sss)", (me, me, "")))
        except GLib.Error as e:
            log("spoofed signal not sent: " + e.message)

    # -------------------------------------------------------------- sync calls --

    def new_call(self, path, iface, member, sig, values, fds=()):
        """A method call to the daemon, never starting anything."""
        msg = Gio.DBusMessage.new_method_call(self.dest, path, iface, member)
        if sig:
            msg.set_body(GLib.Variant("(" + sig + ")", tuple(values)))
        if fds:
            fl = Gio.UnixFDList.new()
            for fd in fds:
                fl.append(fd)
            msg.set_unix_fd_list(fl)
        msg.set_flags(Gio.DBusMessageFlags.NO_AUTO_START)
        return msg

    def call_sync(self, path, iface, member, sig, values, reply_sig, fds=(), timeout_ms=CALL_TIMEOUT_MS):
        msg = self.new_call(path, iface, member, sig, values, fds)
        reply, _serial = self.conn.send_message_with_reply_sync(msg, Gio.DBusSendMessageFlags.NONE, timeout_ms,
                                                               None)
        if reply.get_message_type() == Gio.DBusMessageType.ERROR:
            body = reply.get_body()
            raise Violation("%s.%s: %s: %s" % (iface, member, reply.get_error_name(),
                                               body.unpack()[0] if body is not None else ""))
        if (reply.get_signature() or "") != reply_sig:
            raise Violation("%s.%s: reply signature '%s', expected '%s'" % (iface, member, reply.get_signature(),
                                                                            reply_sig))
        body = reply.get_body()
        return body.unpack() if body is not None else ()

    def list_mappings(self):
        return self.call_sync(MANAGER_PATH, MANAGER_IFACE, "List", "", [], "a(sossts)", timeout_ms=30000)[0]

    def check_daemon(self, when):
        pid = self.args.daemon_pid
        if not os.path.exists("/proc/%d" % pid):
            raise Violation("%s: fuseloopd (pid %d) is gone" % (when, pid))
        try:
            owner = self.owner_pid()
        except GLib.Error as e:
            raise Violation("%s: %s has no owner: %s" % (when, BUS_NAME, e.message))
        if owner != pid:
            raise Violation("%s: %s is owned by pid %d, not %d" % (when, BUS_NAME, owner, pid))
        if self.name_owner() != self.dest:
            raise Violation("%s: %s changed its unique name" % (when, BUS_NAME))
        t = time.monotonic()
        rows = self.list_mappings()
        # What exists now, whoever made it (calls whose replies went to a closed connection too).
        self.mappings = {row[0]: (row[1], row[2]) for row in rows}
        log("%s: fuseloopd (pid %d) owns %s and answered List() in %.3f s" % (when, pid, BUS_NAME,
                                                                              time.monotonic() - t))

    # ------------------------------------------------------------------ phases --

    def pump(self, until=None):
        """Runs the main loop until until() is true (or nothing is in flight). Calls in flight
        without any reply for STALL_SECONDS mean that the daemon hangs."""
        ctx = GLib.MainContext.default()
        wake = GLib.timeout_add(1000, lambda: True)
        try:
            while (until is None and self.inflight > 0) or (until is not None and not until()):
                ctx.iteration(True)
                if self.inflight > 0 and time.monotonic() - self.last_reply > STALL_SECONDS:
                    raise Violation("%d calls in flight and no reply for %d s: fuseloopd hangs"
                                    % (self.inflight, STALL_SECONDS))
        finally:
            GLib.source_remove(wake)

    def random_phase(self):
        rnd = self.rnd
        actions = [(self.call_map, 20), (self.call_map_uri, 12), (self.call_unmap, 12),
                   (self.call_object_unmap, 8), (self.call_properties, 12), (self.call_misc, 10),
                   (self.call_wrong_signature, 20), (self.call_many_fds, 2), (self.call_abandoned, 2)]
        funcs, weights = zip(*actions)
        end = time.monotonic() + self.args.seconds
        next_check = time.monotonic() + 5
        n = 0
        while time.monotonic() < end:
            self.pump(lambda: self.inflight < MAX_INFLIGHT)
            rnd.choices(funcs, weights)[0]()
            n += 1
            while GLib.MainContext.default().iteration(False):
                pass
            if time.monotonic() >= next_check:
                self.check_daemon("after %d random calls" % n)
                next_check = time.monotonic() + 5
        self.pump()
        log("random phase: %d calls, %d mappings made by them still exist" % (n, len(self.mappings)))

    def hazards(self):
        """Two inputs that hurt the daemon once: a spoofed NameOwnerChanged about the caller of a
        bind-to-caller mapping, and one of the daemon's own FUSE files as a source (last: when
        it hangs the daemon, nothing after it can run)."""
        self.bind_check()
        self.own_fuse_file()

    def own_fuse_file(self):
        """Map of an fd of one of the daemon's own FUSE files: refused or served, but the daemon
        must keep answering."""
        name = self.fresh_name()
        path, device = self.call_sync(MANAGER_PATH, MANAGER_IFACE, "Map", "sha{sv}", [name, 0, {}], "os",
                                      fds=[self.fd_pool["file"]])
        self.mappings[name] = (path, device)
        fuse_file = os.path.join(self.args.run_dir, name)
        fd = os.open(fuse_file, os.O_RDONLY | os.O_CLOEXEC)
        try:
            self.send(MANAGER_PATH, MANAGER_IFACE, "Map", "sha{sv}", [name + "-on-fuse", 0, {}], fds=[fd],
                      on_success=self.mapped(name + "-on-fuse"),
                      what="Map('%s-on-fuse') of an fd of the daemon's own FUSE file %s" % (name, fuse_file))
        finally:
            os.close(fd)
        deadline = time.monotonic() + 30
        while self.inflight > 0 and time.monotonic() < deadline:
            GLib.MainContext.default().iteration(False) or time.sleep(0.05)
        if self.inflight > 0:
            raise Violation("Map of an fd of the daemon's own FUSE file %s: no reply within 30 s; "
                            "fuseloopd hangs" % fuse_file)
        self.check_daemon("after a Map of its own FUSE file")
        # The mapping on top goes first: it holds the other one's FUSE file open.
        if name + "-on-fuse" in self.mappings:
            self.call_sync(MANAGER_PATH, MANAGER_IFACE, "Unmap", "sa{sv}", [name + "-on-fuse", {}], "")

    def bind_check(self):
        """A bind-to-caller mapping survives a spoofed NameOwnerChanged about its caller."""
        name = self.fresh_name()
        path, device = self.call_sync(MANAGER_PATH, MANAGER_IFACE, "Map", "sha{sv}",
                                      [name, 0, {"bind-to-caller": GLib.Variant("b", True)}], "os",
                                      fds=[self.fd_pool["file"]])
        self.mappings[name] = (path, device)
        self.spoof_name_owner_changed()
        # The signal was sent before these calls, so the daemon has seen it when they return: a
        # mapping it believed is detaching at once, and gone soon after.
        for wait in (0, 0.5):
            time.sleep(wait)
            state = {row[0]: row[3] for row in self.list_mappings()}.get(name)
            if state != "active":
                self.violation("a spoofed NameOwnerChanged (sent by a client, not the bus) about the caller of "
                               "the bind-to-caller mapping '%s' unmapped it (state now: %s)" % (name, state or "gone"))
                return
        log("bind-to-caller mapping '%s' survived a spoofed NameOwnerChanged" % name)

    def new_connection(self):
        return Gio.DBusConnection.new_for_address_sync(
            Gio.dbus_address_get_for_bus_sync(Gio.BusType.SYSTEM, None),
            Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION,
            None, None)

    def many_at_once(self, label, member, names, conns):
        """Sends member (Map of the data file, or Unmap) for every name at once, spread over
        conns round-robin, while List() is called every 250 ms. Returns the names that
        succeeded, a Counter of the errors, and List()'s slowest answer."""
        ok = {}
        answered = []
        errors = collections.Counter()
        latencies = []
        pending_list = []

        def record(name):
            def done(result):
                (self.mapped(name) if member == "Map" else self.unmapped(name))(result)
                ok[name] = True
            return done

        t0 = time.monotonic()
        for i, name in enumerate(names):
            if member == "Map":
                sig, args, fds = "sha{sv}", [name, 0, {}], [self.fd_pool["file"]]
            else:
                sig, args, fds = "sa{sv}", [name, {}], []
            self.send(MANAGER_PATH, MANAGER_IFACE, member, sig, args, fds=fds, conn=conns[i % len(conns)],
                      on_success=record(name), on_reply=lambda: answered.append(1),
                      on_error=lambda e, text: errors.update(["%s: %s" % (e, text)]),
                      what="%s %s('%s')" % (label, member, name))

        def listed(_result):
            latencies.append(time.monotonic() - pending_list.pop())

        def tick():
            if len(answered) >= len(names):
                return False
            if not pending_list:
                pending_list.append(time.monotonic())
                self.send(MANAGER_PATH, MANAGER_IFACE, "List", "", [], on_success=listed)
            return True

        GLib.timeout_add(250, tick)
        self.pump()
        slowest = max(latencies or [0])
        log("%s: %d %s calls: %d succeeded in %.1f s%s; List() answered %d times meanwhile, at most in %.2f s"
            % (label, len(names), member, len(ok), time.monotonic() - t0,
               "".join("; %d x %s" % (c, e) for e, c in errors.most_common()), len(latencies), slowest))
        if slowest > 30:
            self.violation("%s: List() took %.1f s to answer meanwhile" % (label, slowest))
        return ok, errors

    def check_listed(self, label, names):
        """Each name is listed, active, with its own device and the data file's size."""
        rows = {row[0]: row for row in self.list_mappings()}
        devices = set()
        for name in names:
            row = rows.get(name)
            if not row:
                self.violation("%s: '%s' is not listed" % (label, name))
                continue
            if row[2] != self.mappings[name][1] or row[3] != "active" or row[4] != 1 << 20:
                self.violation("%s: List() row of '%s' is %r" % (label, name, row))
            devices.add(row[2])
        if len(devices) != len(names):
            self.violation("%s: %d mappings have %d devices" % (label, len(names), len(devices)))

    def burst(self):
        """More Map calls at once on one connection than the daemon lets one connection have
        waiting (16): each one is mapped or refused with LimitsExceeded, none is lost."""
        names = ["burst-%d" % i for i in range(48)]
        ok, errors = self.many_at_once("burst on one connection", "Map", names, [self.conn])
        for e in errors:
            if not e.startswith("org.freedesktop.DBus.Error.LimitsExceeded:"):
                self.violation("burst: Map of a valid file failed with %s" % e)
        if len(ok) < 16:
            self.violation("burst: only %d of %d Map calls on one connection succeeded" % (len(ok), len(names)))
        self.check_listed("burst", ok)
        self.cleanup()

    def flood(self):
        """--flood Map calls at once of a valid file, over as many connections as the daemon's
        limit of 16 waiting calls per connection needs, then as many Unmap calls: all succeed."""
        n = self.args.flood
        if n <= 0:
            return
        conns = [self.new_connection() for _ in range((n + 15) // 16)]
        names = ["flood-%d" % i for i in range(n)]
        ok, _errors = self.many_at_once("flood over %d connections" % len(conns), "Map", names, conns)
        if len(ok) != n:
            self.violation("flood: only %d of %d Map calls of a valid file succeeded" % (len(ok), n))
        self.check_listed("flood", ok)
        self.check_daemon("after the flood of maps")

        ok, _errors = self.many_at_once("flood over %d connections" % len(conns), "Unmap", sorted(ok), conns)
        left = [name for name in names if name in self.mappings]
        if left:
            self.violation("flood: %d mappings are left after the unmaps, e.g. '%s'" % (len(left), left[0]))
        for c in conns:
            c.close_sync(None)

    def cleanup(self):
        """Unmaps everything that exists (made by random calls, abandoned calls or a failed flood)."""
        deadline = time.monotonic() + 120
        unmapped = []
        while True:
            rows = self.list_mappings()
            if not rows:
                break
            if time.monotonic() > deadline:
                raise Violation("mappings still listed after 120 s of unmapping: %s" %
                                ", ".join("%s (%s)" % (r[0], r[3]) for r in rows))
            for row in rows:
                if row[3] in ("active", "failed"):
                    try:
                        self.call_sync(MANAGER_PATH, MANAGER_IFACE, "Unmap", "sa{sv}", [row[0], {}], "")
                        unmapped.append(row[0])
                    except Violation as e:
                        log("cleanup: unmapping '%s' (%s): %s" % (row[0], row[3], e))
            time.sleep(0.2)
        if unmapped:
            log("cleanup: unmapped %d mapping%s: %s" % (len(unmapped), "" if len(unmapped) == 1 else "s",
                                                         ", ".join(unmapped)[:300]))
        self.mappings.clear()

    def run(self):
        log("seed %d; %d s of random calls, then a flood of %d maps; daemon %s (pid %d)"
            % (self.args.seed, self.args.seconds, self.args.flood, self.dest, self.args.daemon_pid))
        self.check_daemon("at the start")
        try:
            self.random_phase()
            self.check_daemon("after the random calls")
            self.cleanup()
            self.burst()
            self.flood()
            self.check_daemon("after the flood")
            self.cleanup()
            self.hazards()
            self.cleanup()
            self.check_daemon("after the clean-up")
        except Violation as e:
            self.violation(str(e))
        log("calls: " + ", ".join("%s %d" % kv for kv in sorted(self.calls.items())))
        log("replies: " + ", ".join("%s %d" % kv for kv in sorted(self.replies.items())))
        for name, (call, text) in sorted(self.examples.items()):
            log("  e.g. %s: %s -> %s" % (name, call, text))
        if self.violations:
            log("%d violation(s); repeat the calls with FUSELOOP_BUS_FUZZ_SEED=%d" % (len(self.violations),
                                                                                     self.args.seed))
            return 1
        return 0


def main():
    p = argparse.ArgumentParser(description="hostile bus calls to fuseloopd")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--flood", type=int, default=200)
    p.add_argument("--tmp", required=True)
    p.add_argument("--daemon-pid", type=int, required=True)
    p.add_argument("--run-dir", required=True, help="the daemon's run directory")
    args = p.parse_args()
    if not stat.S_ISDIR(os.stat(args.tmp).st_mode):
        p.error("--tmp must be a directory")
    sys.exit(Fuzzer(args).run())


if __name__ == "__main__":
    main()
