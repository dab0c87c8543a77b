#!/usr/bin/env python3
"""Reads package-benchmark's markdown output (stdin or files) and prints one line per
benchmark: wall-clock p0 (min) and p50 (median) in microseconds, and mallocs (p50).
Used by compare_speed.sh; `--json` prints a JSON object {name: {min_us, median_us, mallocs}}."""
import json
import re
import sys

UNIT = {"ns": 1e-3, "μs": 1.0, "us": 1.0, "ms": 1e3, "s": 1e6}


def parse(text):
    results, name = {}, None
    for line in text.splitlines():
        if line.startswith("### "):
            name = line[4:].strip()
            results[name] = {}
            continue
        if name is None or not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        label = cells[0]
        m = re.match(r"Time \(wall clock\) \((\w+)\)", label)
        if m:
            scale = UNIT[m.group(1)]
            results[name]["min_us"] = float(cells[1]) * scale
            results[name]["median_us"] = float(cells[3]) * scale
        elif label.startswith("Malloc (total)"):
            results[name]["mallocs"] = int(cells[3])
    return results


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--json"]
    text = "".join(open(p).read() for p in args) if args else sys.stdin.read()
    res = parse(text)
    if "--json" in sys.argv:
        print(json.dumps(res, sort_keys=True))
    else:
        for k in sorted(res):
            r = res[k]
            print(f"{k:50s} min {r.get('min_us', float('nan')):12.2f} us  median {r.get('median_us', float('nan')):12.2f} us"
                  f"  mallocs {r.get('mallocs', '-')}")
