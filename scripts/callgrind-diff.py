#!/usr/bin/env python3
"""Where capture's instructions go, per transaction: inclusive cost per function of the N2 run
minus the N1 run (so without the backend's start-up), divided by N2 - N1, for a variant and a
baseline kept by scripts/capture-cost.sh with KEEP=DIR.

Usage: scripts/callgrind-diff.py DIR VARIANT [BASELINE=untracked] [N1=40 N2=240] [--top N]
"""
import re
import subprocess
import sys


def inclusive(path):
    out = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", path],
                         capture_output=True, text=True, check=True).stdout
    costs = {}
    for line in out.splitlines():
        m = re.match(r"^\s*([\d,]+) \([^)]*\)\s+\*?\s*(?:\S*:)?([A-Za-z_][\w']*)", line)
        if m:
            name = m.group(2)
            costs.setdefault(name, int(m.group(1).replace(",", "")))
    return costs


def per_transaction(directory, variant, n1, n2):
    a = inclusive(f"{directory}/{variant}.n1.callgrind")
    b = inclusive(f"{directory}/{variant}.callgrind")
    return {k: (b.get(k, 0) - a.get(k, 0)) / (n2 - n1) for k in set(a) | set(b)}


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    top = 60
    if "--top" in sys.argv:
        top = int(sys.argv[sys.argv.index("--top") + 1])
        args.remove(str(top))
    directory, variant = args[0], args[1]
    baseline = args[2] if len(args) > 2 else "untracked"
    n1, n2 = (int(args[3]), int(args[4])) if len(args) > 4 else (40, 240)
    v = per_transaction(directory, variant, n1, n2)
    base = per_transaction(directory, baseline, n1, n2)
    rows = sorted(((v.get(k, 0) - base.get(k, 0), k) for k in set(v) | set(base)), reverse=True)
    print(f"{'function (inclusive)':<44} {variant} - {baseline}, instructions per transaction")
    for cost, name in rows[:top]:
        if name.startswith("0x"):
            continue
        print(f"{name:<44} {cost / 1000:9.1f}k")


if __name__ == "__main__":
    main()
