#!/usr/bin/env python3
"""Draws the scale curves of bench/scale.sh: bench/results/scale.json -> docs/img/scale.png.

    target/bench/plot-venv/bin/python bench/plot.py bench/results/scale.json docs/img/scale.png
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    data = json.load(open(sys.argv[1]))
    points = data["points"]
    series = {
        "text layers (semantic off)": sorted((p for p in points if not p["semantic"]), key=lambda p: p["documents"]),
        "all layers (semantic on)": sorted((p for p in points if p["semantic"]), key=lambda p: p["documents"]),
    }
    styles = {"text layers (semantic off)": ("tab:blue", "o"), "all layers (semantic on)": ("tab:red", "s")}
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    panels = [
        (axes[0][0], "Check latency per ~100-word text", "ms", [("check_ms_p50", "p50", "-"), ("check_ms_p99", "p99", "--")]),
        (axes[0][1], "Process memory (model + list)", "MB", [("rss_mb", "RSS after", "-"), ("rss_mb_before_list", "RSS before list", ":")]),
        (axes[1][0], "Snapshot build (PutSet -> durable and live)", "s", [("build_seconds", "full build", "-")]),
        (axes[1][1], "Change of 10 documents -> live (AddEntries)", "s", [("add10_seconds_median", "median", "-")]),
    ]
    for ax, title, unit, keys in panels:
        for name, pts in series.items():
            if not pts:
                continue
            color, marker = styles[name]
            xs = [p["documents"] for p in pts]
            for key, label, ls in keys:
                ys = [p[key] for p in pts]
                ax.plot(xs, ys, color=color, marker=marker, linestyle=ls, label=f"{name}: {label}")
                for x, y in zip(xs, ys):
                    ax.annotate(f"{y:.3g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("forget-list documents (40 words each, + 300 terms)")
        ax.set_ylabel(unit)
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    m = data.get("machine", {})
    fig.suptitle(f"Lethe guard scale, synthetic lists, {m.get('nproc', '?')} cores {m.get('cpu', '')}, "
                 f"{m.get('ram_gb', '?')} GB, {data.get('date', '')}", fontsize=11)
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=110)


if __name__ == "__main__":
    main()
