#!/usr/bin/env bash
# Lethe against its peers, both sides measured in the same run on the same machine, reported as
# ratios (Lethe / peer):
#   a. decode tok/s: Lethe (candle) vs llama.cpp (llama-cpp-python) on the same GGUF file;
#   b. embedder texts/s: Lethe's candle MiniLM vs sentence-transformers (PyTorch, CPU), same files;
#   c. HNSW: Lethe's index (hnsw_rs) vs hnswlib, build time and queries/s at equal recall@10.
# The peers are installed into bench/.venv from bench/requirements.txt (pinned; llama-cpp-python
# is built from source by pip, which takes a while on 2 cores). Inputs are made once under
# target/peers/; results go to bench/results/peers.json (medians and ratios), peers.md (the
# tables) and peers-runs.jsonl (every run).
#
#   bench/peers.sh                       # everything (about an hour on 2 cores, install excluded)
#   REPS=3 LARGE_REPS=1 HNSW_SIZES=10000,100000 THREADS=2 bench/peers.sh
#
# Timed runs alternate sides (Lethe first in odd repetitions, the peer first in even ones), so
# that a varying machine load falls on both alike; medians over REPS repetitions (LARGE_REPS for
# HNSW sizes above 10,000). OPENBLAS_CORETYPE and friends are left as the environment has them.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-3}
LARGE_REPS=${LARGE_REPS:-1}
HNSW_SIZES=${HNSW_SIZES:-10000,100000}
THREADS=${THREADS:-2}
NEW_TOKENS=${NEW_TOKENS:-128}
EFS=${EFS:-10,16,24,32,48,64,96,128,192,256,384,512}
venv=bench/.venv
py=$venv/bin/python
work=target/peers
results=bench/results
runs=$results/peers-runs.jsonl
gguf=models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
export RAYON_NUM_THREADS=$THREADS RUST_BACKTRACE=0 TOKENIZERS_PARALLELISM=false
say() { echo "peers: $*" >&2; }

# 1. The peers, in a virtualenv of their own, reinstalled when the requirements change.
if [ ! -x $py ]; then python3 -m venv $venv; fi
if ! (cd $venv && sha256sum --quiet --check requirements.sha256 2>/dev/null); then
  say "installing bench/requirements.txt into $venv (llama-cpp-python compiles llama.cpp: slow)"
  CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) $venv/bin/pip install --quiet -r bench/requirements.txt
  (cd $venv && sha256sum ../requirements.txt > requirements.sha256)
fi

# 2. Models, Lethe's side, inputs.
./scripts/fetch-models.sh
if [ "${BUILD:-1}" = 1 ]; then  # BUILD=0 reuses the examples already built
  cargo build --release --example decode_speed --example embed_speed --example hnsw_peer
fi
bin=target/release/examples
mkdir -p $work $results
say "preparing inputs in $work (texts, HNSW vectors and ground truth, Q8_0 GGUF)"
$py bench/peers.py prep $work --gguf $gguf --sizes "$HNSW_SIZES" --threads "$THREADS" >&2
q8=$work/SmolLM2-135M-Instruct.Q8_0.gguf

# 3. The machine, the versions, the command.
$py - "$THREADS" "$REPS" "$LARGE_REPS" \
  "REPS=$REPS LARGE_REPS=$LARGE_REPS HNSW_SIZES=$HNSW_SIZES THREADS=$THREADS NEW_TOKENS=$NEW_TOKENS bench/peers.sh" > $runs <<'PY'
import json, os, platform, subprocess, sys, datetime
from importlib.metadata import version
sh = lambda c: subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = next((l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")), "0")
print(json.dumps({"meta": {
    "date": sh("date"), "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(),
    "nproc": os.cpu_count(), "cpu": cpu, "ram_gib": round(int(mem) / 2**20, 1),
    "kernel": platform.release(), "loadavg_start": os.getloadavg(),
    "threads": int(sys.argv[1]), "reps": int(sys.argv[2]), "large_reps": int(sys.argv[3]),
    "command": sys.argv[4],
    "env": {k: os.environ.get(k) for k in ["OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "RAYON_NUM_THREADS",
                                            "OMP_NUM_THREADS", "MKL_NUM_THREADS"]},
    "git": sh("git rev-parse HEAD") + (" (work tree with changes)" if sh("git status --porcelain") else ""),
    "rustc": sh("rustc --version"), "python": platform.python_version(),
    "candle": "0.11.1", "hnsw_rs": "0.3.5 (simdeez_f)",
    "peers": {p: version(p) for p in ["llama-cpp-python", "torch", "transformers",
                                      "sentence-transformers", "hnswlib", "numpy"]},
}}))
PY

record() { # BENCH VARIANT REP COMMAND...: runs COMMAND, appends its last stdout line, tagged
  local bench=$1 variant=$2 rep=$3 line load_before
  shift 3
  load_before=$(cut -d' ' -f1 /proc/loadavg)
  line=$("$@" | tail -n 1)
  printf '{"bench":"%s","variant":"%s","rep":%d,"loadavg1":[%s,%s],"result":%s}\n' \
    "$bench" "$variant" "$rep" "$load_before" "$(cut -d' ' -f1 /proc/loadavg)" "$line" >> $runs
  say "$bench $variant rep $rep: $(echo "$line" | $py bench/peers.py summary)"
}

# 4. Timed runs. a + b: decode and embedder, sides alternating, REPS times.
decode_lethe() { record decode "$1" "$rep" $bin/decode_speed "$2" 1 --format "$3" --new-tokens $NEW_TOKENS --ban-eos --json; }
decode_llama() { record decode "$1" "$rep" $py bench/peers.py llama "$2" --threads "$THREADS" --new-tokens $NEW_TOKENS --ban-eos; }
embed_lethe() { record embed lethe "$rep" $bin/embed_speed --texts $work/texts.json --out-npy $work/lethe-embeddings.npy --json; }
embed_st() { record embed sentence-transformers "$rep" $py bench/peers.py embed $work/texts.json --threads "$THREADS" --compare $work/lethe-embeddings.npy; }
for rep in $(seq 1 "$REPS"); do
  lethe_side() {
    decode_lethe lethe-q4_1file-served-q8_0 $gguf q8_0
    decode_lethe lethe-q8_0file $q8 as_stored
    decode_lethe lethe-q4_1file-as-stored $gguf as_stored
  }
  llama_side() {
    decode_llama llama-q4_1 $gguf
    decode_llama llama-q8_0 $q8
  }
  if [ $((rep % 2)) = 1 ]; then lethe_side; llama_side; embed_lethe; embed_st
  else llama_side; lethe_side; embed_st; embed_lethe; fi
done

# c. HNSW, per size: build + ef sweep (1,000 queries, one at a time), sides alternating.
for n in ${HNSW_SIZES//,/ }; do
  reps=$REPS
  if [ "$n" -gt 10000 ]; then reps=$LARGE_REPS; fi
  files=($work/hnsw$n-data.npy $work/hnsw$n-queries.npy $work/hnsw$n-gt.npy)
  for rep in $(seq 1 "$reps"); do
    lethe() { record hnsw lethe "$rep" $bin/hnsw_peer --data "${files[0]}" --queries "${files[1]}" --gt "${files[2]}" --k 10 --ef "$EFS" --json; }
    peer() { record hnsw hnswlib "$rep" $py bench/peers.py hnsw "${files[@]}" --k 10 --threads "$THREADS" --ef "$EFS"; }
    if [ $((rep % 2)) = 1 ]; then lethe; peer; else peer; lethe; fi
  done
done

# 5. Medians, ratios, tables.
$py -c 'import json, os; print(json.dumps({"meta_end": {"loadavg_end": os.getloadavg()}}))' >> $runs
$py bench/peers.py report $runs $results/peers.json | tee $results/peers.md
say "results: $results/peers.json, $results/peers.md, $runs"
