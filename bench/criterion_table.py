#!/usr/bin/env python3
"""Markdown table of the latest `cargo bench` results (criterion's target/criterion/*/new/).

    python3 bench/criterion_table.py [target/criterion] > table.md

Per benchmark: the median time per iteration with criterion's 95% interval of the mean, and the
throughput the benchmark declares (bytes or elements per iteration) turned into a per-unit time.
"""
import json
import sys
from pathlib import Path


def fmt_time(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def main():
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
    rows = []
    for bench in sorted(root.glob("**/new/benchmark.json")):
        meta = json.loads(bench.read_text())
        est = json.loads((bench.parent / "estimates.json").read_text())
        median = est["median"]["point_estimate"]
        lo = est["mean"]["confidence_interval"]["lower_bound"]
        hi = est["mean"]["confidence_interval"]["upper_bound"]
        per = ""
        tp = meta.get("throughput") or {}
        if "Bytes" in tp:
            per = f"{tp['Bytes'] / (median / 1e9) / 1e6:.1f} MB/s ({fmt_time(median * 1024 / tp['Bytes'])} per KB)"
        elif "Elements" in tp and tp["Elements"] > 1:
            per = f"{fmt_time(median / tp['Elements'])} per element ({tp['Elements']} per iteration)"
        rows.append((meta["full_id"], fmt_time(median), f"{fmt_time(lo)} – {fmt_time(hi)}", per))
    print("| benchmark | median per iteration | 95% CI of the mean | per unit |")
    print("|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
