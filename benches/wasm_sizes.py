#!/usr/bin/env python3
"""What the WASM is made of: code bytes per crate, from the name section.

    python3 benches/wasm_sizes.py FILE.wasm [TOP]

FILE must still have its name section (wasm-bindgen's output before the release
build's wasm-opt strips it; see docs/page.md for the commands). Function names are
Rust-mangled symbols; each is put under the crate its path starts with (for a
generic function, the crate that owns the function, not the type it was made for).
Data segments (strings, tables) are reported as one line.
"""
import collections
import re
import subprocess
import sys


def leb(data, pos):
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, pos


def sections(data):
    pos = 8
    while pos < len(data):
        kind = data[pos]
        size, pos = leb(data, pos + 1)
        yield kind, data[pos:pos + size]
        pos += size


def name_of(payload):
    length, pos = leb(payload, 0)
    return payload[pos:pos + length].decode(), payload[pos + length:]


def main():
    data = open(sys.argv[1], "rb").read()
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    imported_funcs = 0
    bodies = []
    names = {}
    data_bytes = 0
    for kind, payload in sections(data):
        if kind == 2:  # imports: functions among them shift the indices
            count, pos = leb(payload, 0)
            for _ in range(count):
                for _ in range(2):
                    n, pos = leb(payload, pos)
                    pos += n
                desc = payload[pos]
                pos += 1
                if desc == 0:
                    _, pos = leb(payload, pos)
                    imported_funcs += 1
                elif desc == 1:
                    pos += 1
                    flags, pos = leb(payload, pos)
                    _, pos = leb(payload, pos)
                    if flags & 1:
                        _, pos = leb(payload, pos)
                elif desc == 2:
                    flags, pos = leb(payload, pos)
                    _, pos = leb(payload, pos)
                    if flags & 1:
                        _, pos = leb(payload, pos)
                elif desc == 3:
                    pos += 2
        elif kind == 10:
            count, pos = leb(payload, 0)
            for _ in range(count):
                size, body = leb(payload, pos)
                bodies.append(size + (body - pos))
                pos = body + size
        elif kind == 11:
            data_bytes += len(payload)
        elif kind == 0:
            name, rest = name_of(payload)
            if name != "name":
                continue
            pos = 0
            while pos < len(rest):
                sub = rest[pos]
                size, pos = leb(rest, pos + 1)
                if sub == 1:
                    count, p = leb(rest, pos)
                    for _ in range(count):
                        index, p = leb(rest, p)
                        n, p = leb(rest, p)
                        names[index] = rest[p:p + n].decode(errors="replace")
                        p += n
                pos += size
    mangled = [names.get(imported_funcs + i, "?") for i in range(len(bodies))]
    demangled = subprocess.run(
        ["c++filt"], input="\n".join(mangled), capture_output=True, text=True
    ).stdout.splitlines()
    by_crate = collections.Counter()
    for name, size in zip(demangled, bodies):
        # `<T as core::fmt::Debug>::fmt` belongs to T's crate's impl; `a::b::c` to `a`.
        path = re.sub(r"^<(.*?)( as .*)?>::", r"\1::", name.lstrip("_"))
        crate = re.split(r"::|<|\s", path.lstrip("<&*"))[0] or "?"
        by_crate[crate] += size
    total = sum(bodies) + data_bytes
    print(f"{len(data):>9} bytes in the file; code {sum(bodies)}, data segments {data_bytes}")
    for crate, size in by_crate.most_common(top):
        print(f"{size:>9}  {100 * size / total:5.1f}%  {crate}")


if __name__ == "__main__":
    main()
