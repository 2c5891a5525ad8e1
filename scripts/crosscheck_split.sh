#!/bin/bash
# The attribution zoo's fingerprint cross-check on two CPU cores (docs/attribution.md):
#   scripts/crosscheck_split.sh a & scripts/crosscheck_split.sh b & wait; scripts/crosscheck_split.sh merge
# ROOT (default runs/attribution-large, build-zoo's default; runs/attribution for --zoo tiny) holds the zoo, as `desra attribute build-zoo --root ROOT` writes it.
# a and b each take every other model of ROOT/zoo, with their own resumable rows file; merge runs the
# documented full command on the concatenated rows, which reuses every row and only compares the pairs.
set -euo pipefail
cd "$(dirname "$0")/.."
R=${2:-runs/attribution-large}
desra=.venv/bin/desra
models=("$R"/zoo/*/*-{mse,gan}.safetensors)
half() {
  local picked=() i
  for ((i = $2; i < ${#models[@]}; i += 2)); do picked+=("${models[i]}"); done
  OMP_NUM_THREADS=1 nice -n 15 $desra fingerprint crosscheck "${picked[@]}" --rows "$R/crosscheck-$1.rows.jsonl" --json \
    > "$R/crosscheck-$1.json" 2> "$R/crosscheck-$1.err" || true   # exit 3 = some verdict failed; the rows are what matter
}
case "${1:-}" in
  a) half a 0 ;;
  b) half b 1 ;;
  merge)
    cat "$R"/crosscheck-{a,b}.rows.jsonl > "$R/crosscheck.rows.jsonl"
    OMP_NUM_THREADS=1 $desra fingerprint crosscheck "${models[@]}" --rows "$R/crosscheck.rows.jsonl" --json > "$R/crosscheck.json" || true
    OMP_NUM_THREADS=1 $desra fingerprint crosscheck "${models[@]}" --rows "$R/crosscheck.rows.jsonl" 2>/dev/null | tee "$R/crosscheck.txt" ;;
  *) echo "usage: $0 a|b|merge [ROOT]" >&2; exit 2 ;;
esac
