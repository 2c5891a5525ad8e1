#!/bin/bash
# The attribution zoo's fingerprint cross-check on two CPU cores (docs/attribution.md):
#   scripts/crosscheck_split.sh a & scripts/crosscheck_split.sh b & wait; scripts/crosscheck_split.sh merge
# a and b each cover half the models with their own resumable rows file; merge runs the documented
# full command on the concatenated rows, which reuses every row and only compares the pairs.
set -euo pipefail
cd "$(dirname "$0")/.."
Z=runs/attribution/zoo
R=runs/attribution
desra=.venv/bin/desra
half() {
  OMP_NUM_THREADS=1 nice -n 15 $desra fingerprint crosscheck "${@:2}" --rows $R/crosscheck16-$1.rows.jsonl --json \
    > $R/crosscheck16-$1.json 2> $R/crosscheck16-$1.err || true   # exit 3 = some verdict failed; the rows are what matter
}
case "${1:-}" in
  a) half a $Z/attr-srvgg-x4-*/*-{mse,gan}.safetensors $Z/attr-rrdbnet-x2-s1/*-{mse,gan}.safetensors ;;
  b) half b $Z/attr-srvgg-x2-*/*-{mse,gan}.safetensors $Z/attr-rrdbnet-x4-s1/*-{mse,gan}.safetensors ;;
  merge)
    cat $R/crosscheck16-a.rows.jsonl $R/crosscheck16-b.rows.jsonl > $R/crosscheck16.rows.jsonl
    OMP_NUM_THREADS=1 $desra fingerprint crosscheck $Z/*/*-{mse,gan}.safetensors --rows $R/crosscheck16.rows.jsonl --json > $R/crosscheck16.json || true
    OMP_NUM_THREADS=1 $desra fingerprint crosscheck $Z/*/*-{mse,gan}.safetensors --rows $R/crosscheck16.rows.jsonl 2>/dev/null | tee $R/crosscheck16.txt ;;
  *) echo "usage: $0 a|b|merge" >&2; exit 2 ;;
esac
