#!/usr/bin/env bash
# Measures what a Lethe replica needs, for the Kubernetes requests and limits
# (docs/operations.md, "Sizing"): start-up time, resident memory idle, and resident memory and
# CPU while serving generations. Runs `lethe serve` on loopback with the default models (fetched
# by scripts/fetch-models.sh) and any extra serve flags given; the generations come from the
# Python example client (.venv, `make pydeps`).
#   scripts/measure-rss.sh [SERVE_FLAGS...]      e.g. --forget eval/forget.jsonl
# LETHE_BIN (default target/release/lethe), LETHE_PYTHON (default .venv/bin/python),
# REQUESTS (default 6, sent 2 at a time), MAX_NEW_TOKENS (default 256).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${LETHE_BIN:-target/release/lethe}
python=${LETHE_PYTHON:-.venv/bin/python}
requests=${REQUESTS:-6}
tokens=${MAX_NEW_TOKENS:-256}
client=examples/python/lethe_client.py
port() { "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
addr=127.0.0.1:$(port)
log=$(mktemp)

started=$(date +%s.%N)
"$bin" serve --listen "$addr" --metrics-listen "127.0.0.1:$(port)" "$@" 2>"$log" &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -f "$log"' EXIT
until "$python" "$client" --addr "$addr" --timeout 2 info >/dev/null 2>&1; do
  kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; echo "lethe exited during start-up" >&2; exit 1; }
  sleep 0.2
done
ready=$(date +%s.%N)
sleep 3
status() { awk -v k="$1:" '$1 == k { printf "%.0f", $2 / 1024 }' "/proc/$pid/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
echo "start-up (process start to serving): $(awk -v a="$started" -v b="$ready" 'BEGIN { printf "%.1f", b - a }') s"
echo "idle:                 VmRSS $(status VmRSS) MiB, peak so far (VmHWM) $(status VmHWM) MiB"

# The highest VmRSS seen while generating (VmHWM also counts the model conversion at start).
samples=$(mktemp)
(while kill -0 "$pid" 2>/dev/null; do status VmRSS >>"$samples"; echo >>"$samples"; sleep 0.2; done) &
sampler=$!
ticks0=$(cpu_ticks)
gen_start=$(date +%s.%N)
for ((i = 0; i < requests; i += 2)); do
  clients=()
  for j in 0 1; do
    "$python" "$client" --addr "$addr" --timeout 900 generate --chat --system "You are a helpful assistant." \
      --max-new-tokens "$tokens" --temperature 0.8 --seed $((i + j)) \
      "Tell me a long story about a lighthouse keeper and a storm." >/dev/null &
    clients+=($!)
  done
  wait "${clients[@]}"
done
gen_end=$(date +%s.%N)
ticks1=$(cpu_ticks)
kill "$sampler"
peak=$(sort -n "$samples" | tail -1)
rm -f "$samples"
hz=$(getconf CLK_TCK)
wall=$(awk -v a="$gen_start" -v b="$gen_end" 'BEGIN { printf "%.1f", b - a }')
echo "after $requests generations of up to $tokens tokens, 2 at a time ($wall s):"
echo "                      VmRSS $(status VmRSS) MiB now, at most $peak MiB while generating (VmHWM $(status VmHWM) MiB)"
cores=$(awk -v t="$((ticks1 - ticks0))" -v hz="$hz" -v w="$wall" 'BEGIN { printf "%.2f", t / hz / w }')
echo "CPU while generating: $cores cores on average ($(nproc) available)"
