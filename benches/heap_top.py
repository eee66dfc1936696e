#!/usr/bin/env python3
"""The largest live allocations at a heaptrack profile's peak, by call stack.

    python3 benches/heap_top.py PROFILE.zst [ROWS]

Prints, for each stack: bytes live at the peak, the number of allocations made there
over the run, bytes per allocation (a per-socket or per-answer size when the count is
the number of sockets or answers), and the stack's frames nearest the allocation that
are not allocator internals. Needs heaptrack_print (apt: heaptrack)."""
import os
import re
import subprocess
import sys
import tempfile

INTERNAL = re.compile(r"alloc|Alloc|box_new|raw_vec|RawVec|new_uninit|grow|reserve|with_capacity|"
                      r"to_vec|to_owned|poll|catch_unwind|call_once|do_call|with_mut|harness\.rs|"
                      r"^_RN|^\($")


def stacks(profile, cost):
    with tempfile.NamedTemporaryFile(suffix=".txt") as out:
        subprocess.run(["heaptrack_print", "-f", profile, "--print-peaks", "0", "--print-allocators", "0",
                        "--print-temporary", "0", "--print-leaks", "0", "-F", out.name,
                        "--flamegraph-cost-type", cost], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        totals = {}
        for line in open(out.name):
            stack, _, value = line.rstrip().rpartition(" ")
            totals[stack] = totals.get(stack, 0) + int(value)
        return totals


def short(frame):
    """`name (file.rs)` of a heaptrack frame, generic arguments dropped."""
    name, _, file = frame.partition(" (")
    name = name.split("<")[0].strip()
    return f"{name} ({file.rstrip(')')})" if name and file else name


def main():
    profile = sys.argv[1]
    rows = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    peak, count = stacks(profile, "peak"), stacks(profile, "allocations")
    print(f"heap live at the peak: {sum(peak.values()) / 1e6:.1f} MB")
    print(f"{'bytes':>10} {'allocs':>7} {'bytes/alloc':>11}  where (nearest the allocation first)")
    for stack, live in sorted(peak.items(), key=lambda item: -item[1])[:rows]:
        frames = [short(f) for f in reversed(stack.split(";")) if not INTERNAL.search(f) and short(f)]
        made = count.get(stack, 0)
        print(f"{live:>10} {made:>7} {live / max(made, 1):>11.0f}  {' <- '.join(frames[:5])}")


if __name__ == "__main__":
    main()
