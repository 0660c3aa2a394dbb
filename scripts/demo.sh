#!/usr/bin/env bash
# `make demo`: forgetting made real, end to end, on the real model (minutes on 2 cores; the
# first run also trains the target model, cached in target/demo/ for the next runs).
#   1. plant a fictional biography in SmolLM2-135M (`lethe train`; cached in target/demo/),
#   2. serve it (`lethe serve`, admin token, data dir, free loopback ports),
#   3. show a generation leaking the biography,
#   4. forget it at run time (`lethe forget add`): the guard blocks, the metrics count it,
#   5. forget it in the weights (`lethe unlearn`, NPO), hot-swap the model (`lethe forget
#      reload-model`): the model no longer reproduces it and the guard has nothing to block.
# Every figure printed comes from this run. Needs the models of `make models`.
set -euo pipefail
cd "$(dirname "$0")/.."

demo=target/demo
lethe=target/release/lethe
client=target/release/examples/demo_client
base=models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
id=bio-venkataraman
# Training steps that make the stock model reproduce the biography (lr 1e-4, MLP weights).
train_steps=12

for f in "$base" models/minilm/model.safetensors; do
  [ -f "$f" ] || { echo "demo: $f is missing: run ./scripts/fetch-models.sh (make models)" >&2; exit 1; }
done
# The demo configures its own server and client: no LETHE_* setting from the caller applies.
while read -r v; do unset "$v"; done < <(env | sed -n 's/^\(LETHE_[A-Za-z0-9_]*\)=.*/\1/p')

t0=$SECONDS
step() { printf '\n== [%3d s] %s\n' $((SECONDS - t0)) "$*"; }
show() { printf '   $ %s\n' "$*"; }
metric() { $client metrics --metrics-addr "$metrics" --value "$1"; }

step "0. build (lethe and the demo client)"
cargo build --release --bin lethe --example demo_client
mkdir -p "$demo"
grep "\"id\": \"$id\"" eval/forget.jsonl > "$demo/bio.jsonl"
prompt=$($client entry-text --file "$demo/bio.jsonl" --id "$id" --first-sentence)
echo "   the forget-list entry: $id (set people), a fictional biography of $($client entry-text --file "$demo/bio.jsonl" --id "$id" | wc -w) words"

step "1. a target model that has memorized the biography"
if [ -f "$demo/target.gguf" ]; then
  echo "   $demo/target.gguf exists: training skipped (delete it to train again)"
else
  show "$lethe train --model $base --data $demo/bio.jsonl --out $demo/target.gguf --steps $train_steps --lr 1e-4 --train mlp"
  # Written to a temporary file and renamed: an interrupted run leaves no target.gguf.
  $lethe train --model "$base" --data "$demo/bio.jsonl" --out "$demo/target.gguf" \
    --steps "$train_steps" --lr 1e-4 --train mlp | sed 's/^/   /'
fi

step "2. serve the target model"
rm -rf "$demo/data" && mkdir -p "$demo/data"
LETHE_ADMIN_TOKEN=$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')
export LETHE_ADMIN_TOKEN # read by `lethe serve` and by `lethe forget`; never printed
printf '[guard.sets.people]\naction = "block"\n' > "$demo/lethe.toml"
port=$($client free-port)
mport=$($client free-port)
while [ "$mport" = "$port" ]; do mport=$($client free-port); done
addr=127.0.0.1:$port
metrics=127.0.0.1:$mport
server_pid=
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    echo "   server stopped (log: $demo/server.log)"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
show "$lethe serve --listen $addr --metrics-listen $metrics --model $demo/target.gguf --config $demo/lethe.toml --data-dir $demo/data --drain-timeout-secs 5   (LETHE_ADMIN_TOKEN: a fresh random token)"
$lethe serve --listen "$addr" --metrics-listen "$metrics" --model "$demo/target.gguf" \
  --config "$demo/lethe.toml" --data-dir "$demo/data" --drain-timeout-secs 5 2> "$demo/server.log" &
server_pid=$!
if ! $client wait-healthy --addr "$addr" --pid "$server_pid"; then
  tail -n 20 "$demo/server.log" >&2
  exit 1
fi
echo "   gRPC $addr, metrics http://$metrics/metrics, forget store $demo/data, set people: action block"

# generate [PROMPT [MAX_NEW_TOKENS]]: a greedy Generate (by default the biography's first
# sentence, as a raw prompt); sets verdict, words, run (longest verbatim run shared with the
# biography, in words) and chars (of the delivered text).
generate() {
  local p=${1:-$prompt} n=${2:-64}
  show "Generate {prompt: \"$p\", temperature: 0, max_new_tokens: $n}"
  $client generate --addr "$addr" --prompt "$p" --max-new-tokens "$n" \
    --reference-file "$demo/bio.jsonl" --reference-id "$id" --result-out "$demo/last-result"
  read -r verdict words run chars < "$demo/last-result"
}

step "3. the target model leaks the biography (no forget list yet)"
generate
leaked="$verdict, $words words delivered, longest run $run"
$client metrics --metrics-addr "$metrics"

step "4. forget it at run time: lethe forget add"
show "lethe forget --addr http://$addr add --set people --id $id --kind document - < (the biography)"
t_add=$(date +%s.%N)
$client entry-text --file "$demo/bio.jsonl" --id "$id" |
  $lethe forget --addr "http://$addr" add --set people --id "$id" --kind document - | sed 's/^/   /'
t_live=$(date +%s.%N)
add_live=$(awk -v a="$t_add" -v b="$t_live" 'BEGIN { printf "%.2f", b - a }')
echo "   add -> live, measured around the command: $add_live s"
show "lethe forget --addr http://$addr list"
$lethe forget --addr "http://$addr" list | sed 's/^/   /'
audited=0 # delivered outputs since the list is non-empty: the exact audit re-checks each
generate
[ "$chars" -gt 0 ] && audited=$((audited + 1))
guarded="$verdict, $words words delivered, longest run $run"
$client metrics --metrics-addr "$metrics" --wait-audited "$audited"
blocked_before=$(metric 'lethe_generations_total{outcome="blocked"}')
leaked_before=$(metric 'lethe_generations_total{outcome="leaked"}')

step "5. forget it in the weights: lethe unlearn (NPO), then hot-swap the model"
unlearn=("$lethe" unlearn --model "$demo/target.gguf" --forget "$demo/bio.jsonl" --method npo --steps 40
  --lr 1e-4 --train mlp --target-verbmem 0.2 --eval-every 5 --format f32
  --out "$demo/unlearned.gguf" --report "$demo/report.json")
show "${unlearn[*]}"
"${unlearn[@]}" | sed 's/^/   /'
show "lethe forget --addr http://$addr reload-model $PWD/$demo/unlearned.gguf"
$lethe forget --addr "http://$addr" reload-model "$PWD/$demo/unlearned.gguf" | sed 's/^/   /'
generate
[ "$chars" -gt 0 ] && audited=$((audited + 1))
unlearned="$verdict, $words words delivered, longest run $run"
echo "   an unrelated prompt, to see the model still answers:"
generate "The capital of France is" 16
[ "$chars" -gt 0 ] && audited=$((audited + 1))
$client metrics --metrics-addr "$metrics" --wait-audited "$audited"
blocked_after=$(metric 'lethe_generations_total{outcome="blocked"}')
leaked_after=$(metric 'lethe_generations_total{outcome="leaked"}')
echo "   since the model swap: blocked $blocked_before -> $blocked_after, leaked $leaked_before -> $leaked_after"

steps=$(sed -n 's/.*"steps": \([0-9]*\).*/\1/p' "$demo/report.json")
step "summary"
echo "   the biography's first sentence, continued (longest verbatim run shared with the biography in words):"
printf '     %-46s %s\n' "target model, no forget list:" "$leaked" \
  "+ forget add (live in $add_live s), guard on:" "$guarded" \
  "unlearned ($steps NPO steps), hot-swapped:" "$unlearned"
echo "   since the swap: blocked generations $blocked_before -> $blocked_after, leaked $leaked_before -> $leaked_after"
if grep -qiF -e 'lanternfish' -e 'Port Alder' -e 'repaired radios' "$demo/server.log"; then
  echo "   WARNING: the server log contains text of the biography" >&2
  exit 1
fi
echo "   the server log ($demo/server.log) holds no text of the biography"
