#!/usr/bin/env bash
# Guard overhead under load: the same bounded workload (examples/load.rs, greedy chat prompts)
# against real `lethe serve` processes on the default models, on 127.0.0.1 only:
#   none     no forget list
#   text10k  10,000 synthetic documents + 300 terms, semantic layer off (--no-semantic)
#   full10k  the same list with every layer on (the default configuration)
#   full1k   1,000 documents + 300 terms, every layer on (embedding 10,000 documents at start-up
#            takes about 1,300 CPU seconds with MiniLM on this machine)
#   none1t, none2t, full1k1t  as none and full1k with CANDLE_NUM_THREADS=1 or 2 (model threads
#            per generation; the server's default is cores / max_concurrent_generations)
#   e.g. CONFIGS="none2t none1t" OUT=target/bench/threads bench/overhead.sh
# All servers run side by side (one fixed copy of the binary) and the load runs alternate
# none, text10k, full10k, none, ... so machine noise hits every side alike. After each run the
# script waits until the server's process is idle again (the exact audit runs off the request
# path, after the reply) and records the CPU time the server used for the run, drain included,
# and the server's own histograms (guard time per token and per layer, TTFT, inter-token
# latency) from /metrics.
#
#   bench/overhead.sh                          # defaults below
#   ROUNDS=4 REQUESTS=8 MAX_TOKENS=128 CONCURRENCY=2 MODE=stream bench/overhead.sh
#   PROFILE=1 bench/overhead.sh                # plus a perf profile of one run (PROFILE_CONFIG)
#   ATTACH=FILE bench/overhead.sh              # servers already running: lines "name pid addr metrics"
#
# Output: target/bench/overhead/ (runs/*.json, metrics snapshots, summary.json, summary.md).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
REQUESTS=${REQUESTS:-8}
CONCURRENCY=${CONCURRENCY:-2}
MAX_TOKENS=${MAX_TOKENS:-128}
MODE=${MODE:-stream}
CONFIGS=${CONFIGS:-"none text10k full10k"}
PROFILE_CONFIG=${PROFILE_CONFIG:-full10k}
ATTACH=${ATTACH:-}
DOCS=${DOCS:-10000}
TERMS=${TERMS:-300}
PROFILE=${PROFILE:-0}
OUT=${OUT:-target/bench/overhead}
START_TIMEOUT=${START_TIMEOUT:-3600}

mkdir -p "$OUT/runs" "$OUT/metrics"
if [ -z "${NO_BUILD:-}" ]; then
  cargo build --release --bin lethe --example load --example synth_forget
fi
[ -n "$ATTACH" ] || cp target/release/lethe "$OUT/lethe"
LOAD=$OUT/load
cp target/release/examples/load "$LOAD"
LIST=$OUT/forget-${DOCS}.jsonl
[ -s "$LIST" ] || target/release/examples/synth_forget "$DOCS" "$TERMS" "$LIST"
LIST1K=$OUT/forget-1000.jsonl
[ -s "$LIST1K" ] || target/release/examples/synth_forget 1000 "$TERMS" "$LIST1K"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

declare -A PID ADDR METRICS
cleanup() {
  [ -n "$ATTACH" ] && return  # attached servers belong to whoever started them
  for c in "${!PID[@]}"; do kill "${PID[$c]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

start() {
  local name=$1; shift
  local port mport
  port=$(free_port); mport=$(free_port)
  local envs=()
  [[ $name =~ ([0-9])t$ ]] && envs=(CANDLE_NUM_THREADS="${BASH_REMATCH[1]}")  # model threads per call
  env "${envs[@]}" "$OUT/lethe" serve --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$mport" \
    --watch-forget false "$@" 2>"$OUT/$name.log" >/dev/null &
  PID[$name]=$!
  ADDR[$name]=127.0.0.1:$port
  METRICS[$name]=127.0.0.1:$mport
  echo "$name: pid ${PID[$name]}, gRPC ${ADDR[$name]}, metrics ${METRICS[$name]}, args: $*"
}

wait_ready() {
  local name=$1 t0=$SECONDS port=${ADDR[$1]##*:}
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    kill -0 "${PID[$name]}" 2>/dev/null || { echo "$name exited:"; tail "$OUT/$name.log"; exit 1; }
    (( SECONDS - t0 < START_TIMEOUT )) || { echo "$name did not start in ${START_TIMEOUT}s"; exit 1; }
    sleep 2
  done
  echo "$name: serving after $((SECONDS - t0)) s (waited here), RSS $(awk '/VmRSS/{print $2/1024 " MB"}' "/proc/${PID[$name]}/status")"
}

# Waits until the server used less than 2 CPU ticks (20 ms) in a second, 3 seconds in a row.
wait_idle() {
  local pid=$1 quiet=0 a b
  while (( quiet < 3 )); do
    a=$(cpu_ticks "$pid"); sleep 1; b=$(cpu_ticks "$pid")
    if (( b - a < 2 )); then quiet=$((quiet + 1)); else quiet=0; fi
  done
}

if [ -n "$ATTACH" ]; then
  while read -r name pid addr metrics; do
    PID[$name]=$pid; ADDR[$name]=$addr; METRICS[$name]=$metrics
  done <"$ATTACH"
else
  for c in $CONFIGS; do
    case $c in
      none) start none ;;
      text10k) start text10k --forget "$LIST" --no-semantic ;;
      full10k) start full10k --forget "$LIST" ;;
      full1k) start full1k --forget "$LIST1K" ;;
      none1t|none2t) start "$c" ;;
      full1k1t) start full1k1t --forget "$LIST1K" ;;
      *) echo "unknown config $c"; exit 1 ;;
    esac
  done
fi
for c in $CONFIGS; do wait_ready "$c"; done
for c in $CONFIGS; do
  grep -E "snapshot|forget|built" "$OUT/$c.log" | tail -3 || true
  "$LOAD" --addr "${ADDR[$c]}" --concurrency 1 --requests 2 --max-tokens 16 --mode "$MODE" >/dev/null
  wait_idle "${PID[$c]}"
  awk '/VmRSS/{print "'"$c"': RSS after warm-up " $2/1024 " MB"}' "/proc/${PID[$c]}/status" | tee "$OUT/$c.rss"
done

uptime | tee "$OUT/load-before.txt"
for r in $(seq 1 "$ROUNDS"); do
  for c in $CONFIGS; do
    pid=${PID[$c]}
    curl -s "http://${METRICS[$c]}/metrics" >"$OUT/metrics/$c-$r-before.txt"
    before=$(cpu_ticks "$pid"); t0=$(date +%s.%N)
    "$LOAD" --addr "${ADDR[$c]}" --concurrency "$CONCURRENCY" --requests "$REQUESTS" \
      --max-tokens "$MAX_TOKENS" --mode "$MODE" --label "$c" --json --out "$OUT/runs/$c-$r.json" >/dev/null
    t1=$(date +%s.%N); after_run=$(cpu_ticks "$pid")
    wait_idle "$pid"
    after=$(cpu_ticks "$pid")
    curl -s "http://${METRICS[$c]}/metrics" >"$OUT/metrics/$c-$r-after.txt"
    echo "{\"run_cpu_s\": $(( after_run - before ))e-2, \"drain_cpu_s\": $(( after - after_run ))e-2, \"run_wall_s\": $(echo "$t1 - $t0" | bc)}" \
      >"$OUT/runs/$c-$r.cpu.json"
    printf 'round %s %-8s %s  cpu %s\n' "$r" "$c" \
      "$(jq -r '"\(.tokens_per_second|.*10|round/10) tok/s, ttft p50 \(.ttft_ms.p50|round) ms, itl p50 \(.itl_ms.p50|.*10|round/10) ms p99 \(.itl_ms.p99|round) ms, errors \(.errors)"' "$OUT/runs/$c-$r.json")" \
      "$(cat "$OUT/runs/$c-$r.cpu.json")"
  done
done
uptime | tee "$OUT/load-after.txt"

if [ "$PROFILE" = 1 ] && [[ " $CONFIGS " == *" $PROFILE_CONFIG "* ]]; then
  pc=$PROFILE_CONFIG
  pid=${PID[$pc]}
  perf record -F 499 -g -p "$pid" -o "$OUT/perf-$pc.data" 2>"$OUT/perf-record.log" &
  perf_pid=$!
  sleep 1
  "$LOAD" --addr "${ADDR[$pc]}" --concurrency "$CONCURRENCY" --requests "$REQUESTS" \
    --max-tokens "$MAX_TOKENS" --mode "$MODE" --label profile --json --out "$OUT/runs/profile.json" >/dev/null
  wait_idle "$pid"
  kill -INT "$perf_pid"; wait "$perf_pid" || true
  perf report -i "$OUT/perf-$pc.data" --no-children --sort symbol --stdio 2>/dev/null \
    | grep -v '^$' | head -400 >"$OUT/perf-$pc-symbols.txt" || true
  perf report -i "$OUT/perf-$pc.data" --no-children --sort comm --stdio 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | head -20 >"$OUT/perf-$pc-threads.txt" || true
  echo "profile: $OUT/perf-$pc-symbols.txt, $OUT/perf-$pc-threads.txt"
fi

python3 bench/overhead_summary.py "$OUT" $CONFIGS
# Results under bench/results/, named after the output folder (overhead.json, threads.json, ...).
mkdir -p bench/results
cp "$OUT/summary.json" "bench/results/$(basename "$OUT").json"
cp "$OUT/summary.md" "bench/results/$(basename "$OUT").md"
