#!/usr/bin/python3
"""flbus.py - a small org.proxmox.FuseLoop1 client for the integration tests.

It exists for what busctl cannot do: pass a file descriptor (Map with an 'h'
argument), show the D-Bus *name* of an error (busctl prints only the message),
send options of arbitrary D-Bus types, and wait for signals with a clear
"ready" point. Calls go to the unique name that owns org.proxmox.FuseLoop1 at
the time of the call, so nothing is ever bus-activated.

  flbus.py [--interactive] COMMAND ...
        --interactive: Map, MapURI and Unmap calls carry ALLOW_INTERACTIVE_AUTHORIZATION
        (without it, like dbus-python's proxies, they never do)

  flbus.py map-fd NAME PATH [--open MODE] [--hold-while-exists FILE] [OPT...]
        opens PATH itself (MODE: rdonly (default), wronly, rdwr, dir, path) and
        calls Map(NAME, fd, OPTS); prints "OBJECT-PATH DEVICE"
  flbus.py map-uri NAME URI [OPT...]       MapURI(NAME, URI, OPTS); same output
  flbus.py map-uri-many N PREFIX URI       N MapURI(PREFIXi, URI) calls at once on one connection;
        prints "PREFIXi OK OBJECT-PATH DEVICE" or "PREFIXi ERROR <error name>: <message>" each
  flbus.py unmap NAME-OR-DEVICE [OPT...]   manager's Unmap
  flbus.py unmap-object NAME [OPT...]      Unmap on the mapping object
  flbus.py list                            List(): one tab-separated line per mapping
  flbus.py props NAME                      every Mapping property as KEY=VALUE
  flbus.py managed-objects                 GetManagedObjects(): "PATH INTERFACE..." lines
  flbus.py request-name NAME [--replace]   RequestName(NAME, DO_NOT_QUEUE [| REPLACE_EXISTING])
        on the bus itself (not the daemon); prints the reply: primary-owner, in-queue,
        exists or already-owner, and releases the name again if it got it
  flbus.py fake-polkit                     owns org.freedesktop.PolicyKit1 (on a private test bus),
        prints "READY", then "CALL <member> <sender>" for each call to it and never replies
  flbus.py fake-systemd JOBFILE            owns org.freedesktop.systemd1 (on a private test bus) and
        answers what fuseloopd asks on SIGTERM: GetUnitByPID() gives fuseloopd.service, its
        Job property the job whose JobType is the first line of JOBFILE, read at each call (an
        empty or missing file: no job). Prints "READY", then "CALL <member> <args>" per call.
        (systemd cannot run as PID 1 of the test machine; only the job's type matters here.)
  flbus.py monitor                         prints "READY", then one line per signal:
        "MappingAdded NAME PATH DEVICE" / "MappingRemoved NAME PATH REASON"
  flbus.py compare-xml SERVED EXPECTED IFACE...
        compares two introspection XML files interface by interface (no bus)

OPT is KEY=TYPE:VALUE with TYPE one of b y n q i u x t d s o, e.g. size=t:4096,
partition-scan=b:true, size=s:oops.

On a D-Bus error, prints "ERROR <error name>: <message>" on stderr and exits 1;
usage and other failures exit 2.
"""

import os
import sys
import time
import xml.etree.ElementTree as ET

BUS_NAME = "org.proxmox.FuseLoop1"
MANAGER_PATH = "/org/proxmox/FuseLoop1"
MANAGER_IFACE = "org.proxmox.FuseLoop1"
MAPPING_IFACE = "org.proxmox.FuseLoop1.Mapping"
MAPPING_PREFIX = "/org/proxmox/FuseLoop1/mapping"
CALL_TIMEOUT = 120
INTERACTIVE = False


def die(msg, code=2):
    print(f"flbus: {msg}", file=sys.stderr)
    sys.exit(code)


def bus_path_encode(name):
    """sd_bus_path_encode() of a single label: everything but [A-Za-z0-9] (and a leading
    digit) becomes _xx (lowercase hex); the empty string becomes '_'."""
    if name == "":
        return "_"
    out = []
    for i, ch in enumerate(name.encode()):
        c = chr(ch)
        if ("a" <= c <= "z") or ("A" <= c <= "Z") or (i > 0 and "0" <= c <= "9"):
            out.append(c)
        else:
            out.append("_%02x" % ch)
    return "".join(out)


def mapping_path(name):
    return MAPPING_PREFIX + "/" + bus_path_encode(name)


def get_bus():
    import dbus
    return dbus.SystemBus()


def owner(bus):
    import dbus
    try:
        return bus.get_name_owner(BUS_NAME)
    except dbus.exceptions.DBusException:
        die(f"{BUS_NAME} has no owner on the system bus (daemon not running?)")


def obj(bus, path):
    # A unique name is never activated; introspect=False keeps the call count minimal.
    return bus.get_object(owner(bus), path, introspect=False)


def invoke(bus, path, iface, member, sig, *args):
    """Calls member on the daemon's unique name and returns its reply (a tuple for several
    values). With --interactive the call carries ALLOW_INTERACTIVE_AUTHORIZATION."""
    import dbus
    import dbus.lowlevel
    if not INTERACTIVE:
        return getattr(dbus.Interface(obj(bus, path), iface), member)(*args, timeout=CALL_TIMEOUT)
    msg = dbus.lowlevel.MethodCallMessage(owner(bus), path, iface, member)
    msg.append(*args, signature=sig)
    msg.set_allow_interactive_authorization(True)
    reply = bus.send_message_with_reply_and_block(msg, CALL_TIMEOUT)
    r = reply.get_args_list()
    return tuple(r) if len(r) > 1 else (r[0] if r else None)


def parse_opts(args):
    import dbus
    conv = {
        "b": lambda v: dbus.Boolean(v.lower() in ("1", "true", "yes", "on")),
        "y": lambda v: dbus.Byte(int(v, 0)),
        "n": lambda v: dbus.Int16(int(v, 0)),
        "q": lambda v: dbus.UInt16(int(v, 0)),
        "i": lambda v: dbus.Int32(int(v, 0)),
        "u": lambda v: dbus.UInt32(int(v, 0)),
        "x": lambda v: dbus.Int64(int(v, 0)),
        "t": lambda v: dbus.UInt64(int(v, 0)),
        "d": lambda v: dbus.Double(float(v)),
        "s": lambda v: dbus.String(v),
        "o": lambda v: dbus.ObjectPath(v),
    }
    opts = dbus.Dictionary({}, signature="sv")
    for a in args:
        if "=" not in a or ":" not in a.split("=", 1)[1]:
            die(f"bad option '{a}', expected KEY=TYPE:VALUE")
        key, rest = a.split("=", 1)
        typ, value = rest.split(":", 1)
        if typ not in conv:
            die(f"bad option type '{typ}' in '{a}'")
        opts[key] = conv[typ](value)
    return opts


def call(fn):
    import dbus
    try:
        return fn()
    except dbus.exceptions.DBusException as e:
        print(f"ERROR {e.get_dbus_name()}: {e.get_dbus_message()}", file=sys.stderr)
        sys.exit(1)


def fmt(v):
    import dbus
    if isinstance(v, dbus.Boolean):
        return "true" if v else "false"
    return str(v)


def cmd_map_fd(args):
    import dbus
    mode = "rdonly"
    hold = None
    rest = []
    i = 0
    while i < len(args):
        if args[i] == "--open":
            mode = args[i + 1]
            i += 2
        elif args[i] == "--hold-while-exists":
            hold = args[i + 1]
            i += 2
        else:
            rest.append(args[i])
            i += 1
    if len(rest) < 2:
        die("usage: map-fd NAME PATH [--open MODE] [--hold-while-exists FILE] [OPT...]")
    name, path, opts = rest[0], rest[1], parse_opts(rest[2:])
    flags = {
        "rdonly": os.O_RDONLY,
        "wronly": os.O_WRONLY,
        "rdwr": os.O_RDWR,
        "dir": os.O_RDONLY | os.O_DIRECTORY,
        "path": os.O_PATH,
    }.get(mode)
    if flags is None:
        die(f"bad --open mode '{mode}'")
    fd = os.open(path, flags | os.O_CLOEXEC)
    bus = get_bus()
    p, dev = call(lambda: invoke(bus, MANAGER_PATH, MANAGER_IFACE, "Map", "sha{sv}",
                                 name, dbus.types.UnixFd(fd), opts))
    os.close(fd)
    print(f"{p} {dev}", flush=True)
    # Keep the bus connection (for bind-to-caller) until the file goes away.
    while hold is not None and os.path.exists(hold):
        time.sleep(0.05)


def cmd_map_uri(args):
    if len(args) < 2:
        die("usage: map-uri NAME URI [OPT...]")
    bus = get_bus()
    opts = parse_opts(args[2:])
    p, dev = call(lambda: invoke(bus, MANAGER_PATH, MANAGER_IFACE, "MapURI", "ssa{sv}",
                                 args[0], args[1], opts))
    print(f"{p} {dev}")


def cmd_map_uri_many(args):
    """N MapURI calls sent at once on one connection; one line per call, in order."""
    if len(args) != 3:
        die("usage: map-uri-many N PREFIX URI")
    import dbus
    import dbus.mainloop.glib
    from gi.repository import GLib
    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    n, prefix, uri = int(args[0]), args[1], args[2]
    bus = get_bus()
    iface = dbus.Interface(obj(bus, MANAGER_PATH), MANAGER_IFACE)
    loop = GLib.MainLoop()
    results = {}

    def done(name, text):
        results[name] = text
        if len(results) == n:
            loop.quit()

    for i in range(n):
        name = f"{prefix}{i}"
        iface.MapURI(name, uri, dbus.Dictionary({}, signature="sv"), timeout=CALL_TIMEOUT,
                     reply_handler=lambda p, d, name=name: done(name, f"OK {p} {d}"),
                     error_handler=lambda e, name=name: done(
                         name, f"ERROR {e.get_dbus_name()}: {e.get_dbus_message()}"))
    loop.run()
    for i in range(n):
        print(f"{prefix}{i} {results[f'{prefix}{i}']}", flush=True)


def cmd_unmap(args):
    if len(args) < 1:
        die("usage: unmap NAME-OR-DEVICE [OPT...]")
    bus = get_bus()
    opts = parse_opts(args[1:])
    call(lambda: invoke(bus, MANAGER_PATH, MANAGER_IFACE, "Unmap", "sa{sv}", args[0], opts))


def cmd_unmap_object(args):
    if len(args) < 1:
        die("usage: unmap-object NAME [OPT...]")
    bus = get_bus()
    opts = parse_opts(args[1:])
    call(lambda: invoke(bus, mapping_path(args[0]), MAPPING_IFACE, "Unmap", "a{sv}", opts))


def cmd_list(args):
    import dbus
    bus = get_bus()
    m = dbus.Interface(obj(bus, MANAGER_PATH), MANAGER_IFACE)
    for row in call(lambda: m.List(timeout=CALL_TIMEOUT)):
        print("\t".join(fmt(v) for v in row))


def cmd_props(args):
    import dbus
    if len(args) != 1:
        die("usage: props NAME")
    bus = get_bus()
    p = dbus.Interface(obj(bus, mapping_path(args[0])), "org.freedesktop.DBus.Properties")
    props = call(lambda: p.GetAll(MAPPING_IFACE, timeout=CALL_TIMEOUT))
    for k in sorted(props):
        print(f"{k}={fmt(props[k])}")


def cmd_managed_objects(args):
    import dbus
    bus = get_bus()
    om = dbus.Interface(obj(bus, MANAGER_PATH), "org.freedesktop.DBus.ObjectManager")
    objs = call(lambda: om.GetManagedObjects(timeout=CALL_TIMEOUT))
    for p in sorted(objs):
        print(p, " ".join(sorted(objs[p].keys())))


def cmd_request_name(args):
    import dbus
    import dbus.bus
    replace = "--replace" in args
    names = [a for a in args if a != "--replace"]
    if len(names) != 1:
        die("usage: request-name NAME [--replace]")
    bus = get_bus()
    flags = dbus.bus.NAME_FLAG_DO_NOT_QUEUE
    if replace:
        flags |= dbus.bus.NAME_FLAG_REPLACE_EXISTING
    r = call(lambda: bus.request_name(names[0], flags))
    print({dbus.bus.REQUEST_NAME_REPLY_PRIMARY_OWNER: "primary-owner",
           dbus.bus.REQUEST_NAME_REPLY_IN_QUEUE: "in-queue",
           dbus.bus.REQUEST_NAME_REPLY_EXISTS: "exists",
           dbus.bus.REQUEST_NAME_REPLY_ALREADY_OWNER: "already-owner"}.get(r, str(r)), flush=True)
    if r in (dbus.bus.REQUEST_NAME_REPLY_PRIMARY_OWNER, dbus.bus.REQUEST_NAME_REPLY_ALREADY_OWNER):
        call(lambda: bus.release_name(names[0]))


def cmd_fake_polkit(args):
    """A polkit that hangs: every call to it stays unanswered."""
    import dbus
    import dbus.bus
    import dbus.lowlevel
    import dbus.mainloop.glib
    from gi.repository import GLib

    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    bus = dbus.SystemBus()

    def swallow(bus_, msg):
        if isinstance(msg, dbus.lowlevel.MethodCallMessage) and \
                msg.get_destination() == "org.freedesktop.PolicyKit1":
            print(f"CALL {msg.get_member()} {msg.get_sender()}", flush=True)
            return dbus.lowlevel.HANDLER_RESULT_HANDLED
        return dbus.lowlevel.HANDLER_RESULT_NOT_YET_HANDLED

    bus.add_message_filter(swallow)
    r = call(lambda: bus.request_name("org.freedesktop.PolicyKit1", dbus.bus.NAME_FLAG_DO_NOT_QUEUE))
    if r != dbus.bus.REQUEST_NAME_REPLY_PRIMARY_OWNER:
        die(f"could not own org.freedesktop.PolicyKit1 (reply {r})")
    print("READY", flush=True)
    GLib.MainLoop().run()


def cmd_fake_systemd(args):
    """The part of systemd's bus API that tells a stopping service which job is queued."""
    import dbus
    import dbus.bus
    import dbus.mainloop.glib
    import dbus.service
    from gi.repository import GLib

    if len(args) != 1:
        die("usage: fake-systemd JOBFILE")
    jobfile = args[0]
    unit_path = "/org/freedesktop/systemd1/unit/fuseloopd_2eservice"
    job_path = "/org/freedesktop/systemd1/job/4711"

    def job_type():
        try:
            with open(jobfile, encoding="utf-8") as f:
                return f.readline().strip()
        except FileNotFoundError:
            return ""

    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    bus = dbus.SystemBus()

    class Manager(dbus.service.Object):
        @dbus.service.method("org.freedesktop.systemd1.Manager", in_signature="u", out_signature="o")
        def GetUnitByPID(self, pid):
            print(f"CALL GetUnitByPID {pid}", flush=True)
            return dbus.ObjectPath(unit_path)

    class Props(dbus.service.Object):
        @dbus.service.method("org.freedesktop.DBus.Properties", in_signature="ss", out_signature="v")
        def Get(self, iface, prop):
            print(f"CALL Get {iface} {prop}", flush=True)
            t = job_type()
            if iface == "org.freedesktop.systemd1.Unit" and prop == "Job":
                value = (dbus.UInt32(4711), dbus.ObjectPath(job_path)) if t else (dbus.UInt32(0), dbus.ObjectPath("/"))
                return dbus.Struct(value, signature="uo", variant_level=1)
            if iface == "org.freedesktop.systemd1.Job" and prop == "JobType" and t:
                return dbus.String(t, variant_level=1)
            raise dbus.exceptions.DBusException("no such property", name="org.freedesktop.DBus.Error.UnknownProperty")

    Manager(bus, "/org/freedesktop/systemd1")
    Props(bus, unit_path)
    Props(bus, job_path)
    r = call(lambda: bus.request_name("org.freedesktop.systemd1", dbus.bus.NAME_FLAG_DO_NOT_QUEUE))
    if r != dbus.bus.REQUEST_NAME_REPLY_PRIMARY_OWNER:
        die(f"could not own org.freedesktop.systemd1 (reply {r})")
    print("READY", flush=True)
    GLib.MainLoop().run()


def cmd_monitor(args):
    import dbus
    import dbus.mainloop.glib
    from gi.repository import GLib

    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    bus = dbus.SystemBus()

    def on_added(name, path, device):
        print(f"MappingAdded {name} {path} {device}", flush=True)

    def on_removed(name, path, reason):
        print(f"MappingRemoved {name} {path} {reason}", flush=True)

    bus.add_signal_receiver(on_added, "MappingAdded", MANAGER_IFACE, None, MANAGER_PATH)
    bus.add_signal_receiver(on_removed, "MappingRemoved", MANAGER_IFACE, None, MANAGER_PATH)
    # AddMatch is sent without waiting for its reply; a round trip to the bus after it
    # guarantees that the bus has installed the rules before we say READY.
    bus.call_blocking("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                      "GetId", "", ())
    print("READY", flush=True)
    GLib.MainLoop().run()


# ------------------------------------------------------------------ XML --

def _annotations(el):
    return {a.get("name"): a.get("value") for a in el.findall("annotation")}


def _args(el, default_dir):
    return [(a.get("name"), a.get("type"), a.get("direction", default_dir) if default_dir else None)
            for a in el.findall("arg")]


def _describe_iface(el):
    d = {"annotations": _annotations(el), "methods": {}, "signals": {}, "properties": {}}
    for m in el.findall("method"):
        d["methods"][m.get("name")] = {"args": _args(m, "in"), "annotations": _annotations(m)}
    for s in el.findall("signal"):
        d["signals"][s.get("name")] = {"args": _args(s, None), "annotations": _annotations(s)}
    for p in el.findall("property"):
        d["properties"][p.get("name")] = {"type": p.get("type"), "access": p.get("access"),
                                          "annotations": _annotations(p)}
    return d


def _diff(a, b, where, out):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a:
                out.append(f"{where}/{k}: only in the expected file: {b[k]!r}")
            elif k not in b:
                out.append(f"{where}/{k}: only in what the daemon serves: {a[k]!r}")
            else:
                _diff(a[k], b[k], f"{where}/{k}", out)
    elif a != b:
        out.append(f"{where}: daemon serves {a!r}, expected file has {b!r}")


def cmd_compare_xml(args):
    if len(args) < 3:
        die("usage: compare-xml SERVED EXPECTED IFACE...")
    served, expected = ET.parse(args[0]).getroot(), ET.parse(args[1]).getroot()
    problems = []
    for iface in args[2:]:
        s = [i for i in served.iter("interface") if i.get("name") == iface]
        e = [i for i in expected.iter("interface") if i.get("name") == iface]
        if len(s) != 1:
            problems.append(f"{iface}: daemon serves it {len(s)} times (expected once)")
            continue
        if len(e) != 1:
            problems.append(f"{iface}: {args[1]} has it {len(e)} times (expected once)")
            continue
        ds, de = _describe_iface(s[0]), _describe_iface(e[0])
        for kind in ("methods", "signals", "properties"):
            if not ds[kind] and not de[kind]:
                continue
            print(f"{iface}: {kind}: served {sorted(ds[kind])}, expected {sorted(de[kind])}")
        _diff(ds, de, iface, problems)
    for p in problems:
        print("MISMATCH", p)
    if problems:
        sys.exit(1)
    print("introspection data match for:", " ".join(args[2:]))


COMMANDS = {
    "map-fd": cmd_map_fd,
    "map-uri": cmd_map_uri,
    "map-uri-many": cmd_map_uri_many,
    "unmap": cmd_unmap,
    "unmap-object": cmd_unmap_object,
    "list": cmd_list,
    "props": cmd_props,
    "managed-objects": cmd_managed_objects,
    "request-name": cmd_request_name,
    "fake-polkit": cmd_fake_polkit,
    "fake-systemd": cmd_fake_systemd,
    "monitor": cmd_monitor,
    "compare-xml": cmd_compare_xml,
}


def main():
    global INTERACTIVE
    argv = sys.argv[1:]
    if argv and argv[0] == "--interactive":
        INTERACTIVE = True
        argv = argv[1:]
    if not argv or argv[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    main()
