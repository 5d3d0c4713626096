#!/usr/bin/python3
"""make-corpus.py - writes the seed corpus of each fuzz target to fuzz/corpus/<target>/.

The seeds are committed; run this again after changing how a target reads its input (the
options target reads a small program, see fuzz-options.c) and commit the result:

    python3 fuzz/make-corpus.py
"""

import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# ------------------------------------------------------------------ plain text --

NAMES = {
    "vm-disk": b"vm-100-disk-0",
    "timestamp": b"backup_2024-01-01T10:00:00",
    "punctuation": b"a._:@+-Z9",
    "max-length": b"a" * 128,
    "too-long": b"a" * 129,
    "leading-dot": b".hidden",
    "slash": b"a/b",
    "utf8": "\u00e4".encode(),
    "embedded-nul": b"ok\0bad",
}

URIS = {
    "path": b"/srv/images/disk.img",
    "file-uri": b"file:///srv/images/disk%20one.img",
    "encoded-dotdot": b"file:///a/%2e%2e/b",
    "encoded-utf8": b"file:///caf%C3%A9",
    "encoded-slash": b"file:///a%2fb",
    "nbd": b"nbd://host/export",
    "components": b"/a//b/./c",
    "nul-escape": b"file:///x%00y",
    "overlong": b"file:///a%c0%af",
    "bad-escape": b"file:///a%4",
    "path-max": b"/" + b"a" * 4095,
}

SIZES = {
    "zero": b"0",
    "bytes": b"4096",
    "kib": b"1K",
    "mib-suffix": b"3MiB",
    "gib": b"2g",
    "tib-suffix": b"5TiB",
    "largest-t": b"16777215T",
    "u64-max": b"18446744073709551615",
    "u64-overflow": b"18446744073709551616",
    "decimal": b"1.5G",
    "kb": b"1KB",
    "leading-zeros": b"0" * 40 + b"1k",
    "peta": b"1P",
}

# ------------------------------------------------------------- options program --

KEYS = ["size", "offset", "partition-scan", "sector-size", "direct-io", "protocol",
        "export-name", "bind-to-caller", "lazy", "timeout", "passthrough"]
TYPES = ["t", "u", "b", "s", "y", "n", "q", "i", "x", "d", "o", "g", "h", "v", "as"]
T_VALUES = [0, 1, 511, 512, 513, 1024, 4096, 1 << 20, 1 << 32, 1 << 63,
            (1 << 64) - 512, (1 << 64) - 2, (1 << 64) - 1]
U_VALUES = [0, 1, 256, 511, 512, 1024, 2048, 3000, 4096, 8192, 65536, (1 << 32) - 1]
S_VALUES = ["raw", "nbd", "", "RAW", "raw ", "raw\n"]
MAP, UNMAP = 0, 3


def pick(table, value, raw_marker=0xff):
    """A known key or type by its index, or raw bytes (0xff, a length, the bytes)."""
    if value in table:
        return bytes([table.index(value)])
    raw = value.encode()
    return bytes([raw_marker, len(raw)]) + raw


def value(typ, v):
    if typ == "t":
        if v in T_VALUES:
            return bytes([T_VALUES.index(v)])
        return bytes([0xff]) + struct.pack("<Q", v)
    if typ == "u":
        if v in U_VALUES:
            return bytes([U_VALUES.index(v)])
        return bytes([0xff]) + struct.pack("<I", v)
    if typ == "b":
        return bytes([1 if v else 0])
    if typ == "s":
        if v in S_VALUES:
            return bytes([S_VALUES.index(v)])
        raw = v.encode()
        return bytes([0xff]) + struct.pack("<H", len(raw)) + raw
    return b""


def entry(op, key, typ, v=None):
    out = bytes([op, 255]) + pick(KEYS, key) + pick(TYPES, typ)
    return out + value(typ, v)


def program(entries, source_size):
    """n, the entries, then the source size (raw u64)."""
    return bytes([len(entries)]) + b"".join(entries) + bytes([3]) + struct.pack("<Q", source_size)


OPTIONS = {
    "offset-size": program([entry(MAP, "offset", "t", 4096), entry(MAP, "size", "t", 8192)], 1 << 20),
    "default-size": program([entry(MAP, "offset", "t", 1 << 20)], 4 << 20),
    "all-options": program([entry(MAP, "sector-size", "u", 4096), entry(MAP, "partition-scan", "b", True),
                            entry(MAP, "direct-io", "b", True), entry(MAP, "protocol", "s", "raw"),
                            entry(MAP, "export-name", "s", "export"), entry(MAP, "bind-to-caller", "b", True)],
                           1 << 30),
    "beyond-source": program([entry(MAP, "offset", "t", 4096), entry(MAP, "size", "t", 1 << 20)], 1 << 20),
    "wrong-types": program([entry(MAP, "size", "s", "1024"), entry(MAP, "offset", "u", 512),
                            entry(MAP, "partition-scan", "as")], 1 << 20),
    "unknown-key": program([entry(MAP, "no-such-option", "b", True), entry(MAP, "timeout", "t", 30)], 1 << 20),
    "bad-values": program([entry(MAP, "size", "t", 0), entry(MAP, "sector-size", "u", 3000),
                           entry(MAP, "protocol", "s", "nbd")], 1 << 20),
    "long-export-name": program([entry(MAP, "export-name", "s", "e" * 4097)], 1 << 20),
    "unmap-lazy": program([entry(UNMAP, "lazy", "b", True), entry(UNMAP, "lazy", "t", 1)], 512),
    "small-source": program([entry(MAP, "sector-size", "u", 4096)], 2048),
}

# --------------------------------------------------------------- restart record --

FUSE_INIT = 26
FUSE_KERNEL_VERSION = 7


def fuse_init_hex(minor=31, flags=0x3fffffb):
    body = struct.pack("<IIII", FUSE_KERNEL_VERSION, minor, 131072, flags) + bytes(48)
    header = struct.pack("<IIQQIIIHH", 40 + len(body), FUSE_INIT, 2, 0, 0, 0, 0, 0, 0)
    return (header + body).hex()


def record(lines):
    return ("fuseloop-restart-record 1\n" + "".join(f"{k}={v}\n" for k, v in lines) + "end\n").encode()


BASE = [("name", "vm-100-disk-0"), ("owner", "0"), ("created", "1700000000000000"),
        ("source", "/srv/images/vm-100-disk-0.raw"), ("loop", "0"), ("diskseq", "17"), ("dio", "0"),
        ("source-async", "0"), ("timeout", "0"), ("fuse-init", fuse_init_hex()), ("offset", "0"), ("size", "1048576"), ("sector-size", "512"),
        ("partition-scan", "0"), ("direct-io", "0"), ("bind-to-caller", "0")]

RECORDS = {
    "fd-source": record(BASE),
    "uri-source": record(BASE[:3] + [("uri-path", "/srv/images/disk\\x20one.img")] + BASE[3:]
                         + [("protocol", "raw")]),
    "bind-to-caller": record([(k, "1" if k == "bind-to-caller" else v) for k, v in BASE]
                             + [("caller", ":1.42")]),
    "escapes": record([(k, "odd\\x0aname\\x5c\\x3d\\xc3\\xa4" if k == "source" else v) for k, v in BASE]
                      + [("export-name", "ex\\x20port")]),
    "offset-4k-sectors": record([(k, {"offset": "1048576", "size": "4096", "sector-size": "4096"}.get(k, v))
                                 for k, v in BASE]),
    "truncated": record(BASE)[:-7],
    "duplicate-key": record(BASE + [("name", "again")]),
    "bad-fuse-init": record([(k, "00" * 40 if k == "fuse-init" else v) for k, v in BASE]),
}

CORPORA = {"names": NAMES, "uri": URIS, "size": SIZES, "options": OPTIONS, "restart-record": RECORDS}


def main():
    for target, seeds in CORPORA.items():
        d = os.path.join(HERE, "corpus", target)
        os.makedirs(d, exist_ok=True)
        for name, data in seeds.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
        print(f"{d}: {len(seeds)} seeds", file=sys.stderr)


if __name__ == "__main__":
    main()
