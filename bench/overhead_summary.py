#!/usr/bin/env python3
"""Summarizes a bench/overhead.sh run (standard library only).

    python3 bench/overhead_summary.py target/bench/overhead none text10k full10k

Per configuration and round: the load generator's report (runs/CONFIG-ROUND.json), the server's
CPU time (runs/CONFIG-ROUND.cpu.json) and the change of its histograms over the run
(metrics/CONFIG-ROUND-{before,after}.txt). Ratios against the first configuration are taken
within each round (the runs of a round are back to back), then their median over rounds.
Writes summary.json and summary.md next to the runs.
"""
import json
import re
import statistics
import sys
from pathlib import Path

LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$')


def scrape(path):
    out = {}
    for line in Path(path).read_text().splitlines():
        m = LINE.match(line)
        if m and not line.startswith("#"):
            try:
                out[(m.group(1), m.group(2) or "")] = float(m.group(3))
            except ValueError:
                pass
    return out


def delta(before, after, name, labels=""):
    return after.get((name, labels), 0.0) - before.get((name, labels), 0.0)


def layer_sums(before, after, name):
    out = {}
    for (n, labels), v in after.items():
        if n == name:
            layer = re.search(r'layer="([^"]+)"', labels)
            if layer:
                out[layer.group(1)] = v - before.get((n, labels), 0.0)
    return out


def main():
    out_dir = Path(sys.argv[1])
    configs = sys.argv[2:]
    rounds = sorted({int(p.stem.split("-")[-1]) for p in (out_dir / "runs").glob("*-*.json")
                     if not p.stem.endswith(".cpu") and p.stem.split("-")[-1].isdigit()})
    per = {c: [] for c in configs}
    for r in rounds:
        for c in configs:
            run = out_dir / "runs" / f"{c}-{r}.json"
            if not run.exists():
                continue
            rep = json.loads(run.read_text())
            cpu = json.loads((out_dir / "runs" / f"{c}-{r}.cpu.json").read_text())
            b = scrape(out_dir / "metrics" / f"{c}-{r}-before.txt")
            a = scrape(out_dir / "metrics" / f"{c}-{r}-after.txt")
            tokens = rep["generated_tokens"]
            steps = delta(b, a, "lethe_guard_step_seconds_count")
            itl_n = delta(b, a, "lethe_inter_token_latency_seconds_count")
            ttft_n = delta(b, a, "lethe_time_to_first_token_seconds_count")
            layers = layer_sums(b, a, "lethe_guard_layer_seconds_sum")
            per[c].append({
                "round": r,
                "tokens_per_second": rep["tokens_per_second"],
                "generated_tokens": tokens,
                "ok": rep["ok"],
                "errors": rep["errors"],
                "verdicts": rep["verdicts"],
                "client_ttft_ms": rep["ttft_ms"],
                "client_itl_ms": rep["itl_ms"],
                "client_latency_ms": rep["latency_ms"],
                "server_itl_mean_ms": 1e3 * delta(b, a, "lethe_inter_token_latency_seconds_sum") / itl_n if itl_n else None,
                "server_ttft_mean_ms": 1e3 * delta(b, a, "lethe_time_to_first_token_seconds_sum") / ttft_n if ttft_n else None,
                "guard_step_mean_ms": 1e3 * delta(b, a, "lethe_guard_step_seconds_sum") / steps if steps else None,
                "guard_layer_ms_per_token": {k: 1e3 * v / tokens for k, v in layers.items()} if tokens else {},
                "holdback_mean_ms": (1e3 * delta(b, a, "lethe_stream_holdback_seconds_sum")
                                     / max(delta(b, a, "lethe_stream_holdback_seconds_count"), 1)),
                "audited": delta(b, a, "lethe_audit_outputs_total"),
                "audit_dropped": delta(b, a, "lethe_audit_dropped_total"),
                "server_cpu_s_run": cpu["run_cpu_s"],
                "server_cpu_s_drain": cpu["drain_cpu_s"],
                "server_cpu_ms_per_token": 1e3 * (cpu["run_cpu_s"] + cpu["drain_cpu_s"]) / tokens if tokens else None,
            })

    def med(xs):
        xs = [x for x in xs if x is not None]
        return statistics.median(xs) if xs else None

    base = configs[0]
    summary = {"configs": {}, "rounds": len(rounds)}
    for c in configs:
        runs = per[c]
        ratios = []
        for run in runs:
            ref = next((x for x in per[base] if x["round"] == run["round"]), None)
            if ref:
                ratios.append(run["tokens_per_second"] / ref["tokens_per_second"])
        layers = sorted({k for run in runs for k in run["guard_layer_ms_per_token"]})
        summary["configs"][c] = {
            "runs": runs,
            "tokens_per_second": [run["tokens_per_second"] for run in runs],
            "tokens_per_second_median": med([run["tokens_per_second"] for run in runs]),
            "throughput_ratio_vs_" + base: ratios,
            "throughput_ratio_median": med(ratios),
            "client_ttft_p50_ms": med([run["client_ttft_ms"]["p50"] for run in runs if run["client_ttft_ms"]]),
            "client_ttft_p99_ms": med([run["client_ttft_ms"]["p99"] for run in runs if run["client_ttft_ms"]]),
            "client_itl_p50_ms": med([run["client_itl_ms"]["p50"] for run in runs if run["client_itl_ms"]]),
            "client_itl_p99_ms": med([run["client_itl_ms"]["p99"] for run in runs if run["client_itl_ms"]]),
            "client_latency_p50_ms": med([run["client_latency_ms"]["p50"] for run in runs if run["client_latency_ms"]]),
            "client_latency_p99_ms": med([run["client_latency_ms"]["p99"] for run in runs if run["client_latency_ms"]]),
            "server_itl_mean_ms": med([run["server_itl_mean_ms"] for run in runs]),
            "server_ttft_mean_ms": med([run["server_ttft_mean_ms"] for run in runs]),
            "guard_step_mean_ms": med([run["guard_step_mean_ms"] for run in runs]),
            "guard_layer_ms_per_token": {k: med([run["guard_layer_ms_per_token"].get(k) for run in runs]) for k in layers},
            "holdback_mean_ms": med([run["holdback_mean_ms"] for run in runs]),
            "server_cpu_ms_per_token": med([run["server_cpu_ms_per_token"] for run in runs]),
            "server_cpu_s_drain": med([run["server_cpu_s_drain"] for run in runs]),
            "audited": sum(run["audited"] for run in runs),
            "audit_dropped": sum(run["audit_dropped"] for run in runs),
            "errors": [run["errors"] for run in runs if run["errors"]],
        }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")

    def f(x, nd=1):
        return "-" if x is None else f"{x:.{nd}f}"

    rows = ["| configuration | tok/s per round | median | ratio to " + base + " (median) | TTFT p50 / p99 (client) "
            "| inter-token p50 / p99 (client) | server inter-token mean | guard per token: step mean; ngram / term / semantic "
            "| server CPU per token (run + audit drain) |",
            "|---|---|---|---|---|---|---|---|---|"]
    for c in configs:
        s = summary["configs"][c]
        lay = s["guard_layer_ms_per_token"]
        rows.append(
            f"| {c} | {' / '.join(f(x) for x in s['tokens_per_second'])} | {f(s['tokens_per_second_median'])} "
            f"| {f(s['throughput_ratio_median'], 3)} | {f(s['client_ttft_p50_ms'], 0)} / {f(s['client_ttft_p99_ms'], 0)} ms "
            f"| {f(s['client_itl_p50_ms'])} / {f(s['client_itl_p99_ms'])} ms | {f(s['server_itl_mean_ms'])} ms "
            f"| {f(s['guard_step_mean_ms'], 3)} ms; {f(lay.get('ngram'), 3)} / {f(lay.get('term'), 3)} / {f(lay.get('semantic'), 3)} ms "
            f"| {f(s['server_cpu_ms_per_token'])} ms |")
    md = "\n".join(rows) + "\n"
    (out_dir / "summary.md").write_text(md)
    print(md)
    for c in configs:
        s = summary["configs"][c]
        print(f"{c}: audited {s['audited']:.0f}, audit dropped {s['audit_dropped']:.0f}, "
              f"drain CPU median {f(s['server_cpu_s_drain'], 2)} s, hold-back mean {f(s['holdback_mean_ms'])} ms, "
              f"errors {s['errors']}")


if __name__ == "__main__":
    main()
