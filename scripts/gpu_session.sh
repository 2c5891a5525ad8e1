#!/bin/bash
# Every GPU figure issues 16 and 18 ask for, in one lease (15 min of device time, 10 min per call).
# Prepare here with scripts/gpu_pack.sh, which prints the three device calls:
#   a  the GPU bench suite (desra bench --suite gpu), then the critical-image rows (fingerprint + prune,
#      int8 and fine-tune attacks) of RealESRGAN_x4plus, _anime_6B, realesr-animevideov3 and the derived
#      L1 parent, one process per model;
#   b  RealSR DF2K's rows, beside the RealESRGAN_x4plus repair-length runs (scripts/repair_length.sh);
#   c  RealSR DF2K_JPEG's rows.
# Each part stops its work BUDGET seconds after it starts (a 400, b 230, c 170: with a machine's start, about
# the 15 minutes of a lease), so a call returns inside its limit with every finished row. Rows are resumable:
# carry runs/gpu too, and each part first copies the rows an earlier lease left there (and skips the suite
# if its JSON is there), so a later lease carries on where this one stopped.
# Back here:  scripts/gpu_session.sh merge DIR...  (the files_at folders of the calls, oldest first) puts the
# rows and the suite in runs/gpu/ and prints the published models' cross-check, reusing every row.
set -uo pipefail
cd "$(dirname "$0")/.."
part=${1:?usage: $0 a|b|c (on the GPU machine) or $0 merge DIR... (here)}
shift

PUBLISHED_A=(RealESRGAN_x4plus RealESRGAN_x4plus_anime_6B realesr-animevideov3 realesrgan-x4plus-l1-derived)
PUBLISHED=("${PUBLISHED_A[@]}" RealSR-DF2K-x4 RealSR-DF2K_JPEG-x4)

if [ "$part" = merge ]; then
  desra=${DESRA:-.venv/bin/desra}
  mkdir -p runs/gpu
  # A later call's rows file of a model holds the earlier rows too (each part starts from the carried ones).
  for dir in "$@"; do cp "$dir"/rows-*.jsonl "$dir"/gpu-suite.json "$dir"/repair-length.md "$dir"/log-*.txt runs/gpu/ 2>/dev/null; done
  cat runs/gpu/rows-*.jsonl > runs/gpu/published.rows.jsonl
  models=()
  for name in "${PUBLISHED[@]}"; do
    case $name in RealSR-*) models+=("${DESRA_HOME:-$HOME/.cache/desra}/models/$name.safetensors") ;; *) models+=("$name") ;; esac
  done
  # Every row is in the file, so this only compares (seconds on the CPU).
  same=(--iterations "${ITERATIONS:-5000}" --finetune-iterations "${FINETUNE_ITERATIONS:-500}" --rows runs/gpu/published.rows.jsonl)
  $desra fingerprint crosscheck "${models[@]}" "${same[@]}" --json > runs/gpu/published.json
  $desra fingerprint crosscheck "${models[@]}" "${same[@]}" 2> /dev/null | tee runs/gpu/published.txt
  exit 0
fi

OUT=${OUT:?the device tool sets OUT; for a dry run here: OUT=/tmp/gpu-out $0 $part}
start=$(date +%s)
case $part in a) budget=${BUDGET:-400} ;; b) budget=${BUDGET:-230} ;; *) budget=${BUDGET:-170} ;; esac
left() { echo $(( budget - ($(date +%s) - start) )); }
log=$OUT/log-$part.txt
# (a bare `wait` would also wait for this tee, which waits for the script: every wait names its jobs)
exec > >(tee -a "$log") 2>&1
export PYTHONPATH="$PWD/.gpu/base/site:$PWD/.gpu/$part/site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
py=${PY:-python3}
desra() { "$py" -m desra "$@"; }
device=${DEVICE:-cuda}
iterations=${ITERATIONS:-5000}   # critical-image Adam steps (the paper's); smoke runs here pass a few
finetune=${FINETUNE_ITERATIONS:-500}

echo "== part $part, $(date -u +%FT%TZ), budget ${budget}s"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
"$py" -c "import torch, basicsr, desra; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" || exit 1

# rows MODEL_OR_FILE NAME: one model's fingerprint and attack rows, resumable, into $OUT/rows-NAME.jsonl
rows() {
  local secs; secs=$(left)
  [ "$secs" -gt 30 ] || { echo "no time left for $2"; return; }
  [ -f "runs/gpu/rows-$2.jsonl" ] && [ ! -f "$OUT/rows-$2.jsonl" ] && cp "runs/gpu/rows-$2.jsonl" "$OUT/"   # an earlier lease's
  timeout "$((secs - 10))" "$py" -m desra fingerprint crosscheck "$1" --device "$device" --iterations "$iterations" \
    --finetune-iterations "$finetune" --rows "$OUT/rows-$2.jsonl" > /dev/null 2> "/tmp/rows-$2.err"
  local code=$?  # 3: a verdict failed, which is a finding; 124: out of time
  echo "rows $2: exit $code after $(( $(date +%s) - start ))s, $(wc -l < "$OUT/rows-$2.jsonl" 2>/dev/null || echo 0) of 4 rows"
  case $code in 0|3|124) ;; *) tail -n 5 "/tmp/rows-$2.err" ;; esac
}

case $part in
  a)
    complete='import json, sys; d = json.load(open(sys.argv[1])); sys.exit(not (d["environment"]["device"].startswith("cuda") and d["benchmarks"] and not d["skipped"] and not d["failed"]))'
    if [ -z "${SUITE:-}" ] && [ -f runs/gpu/gpu-suite.json ] && "$py" -c "$complete" runs/gpu/gpu-suite.json; then
      echo "suite: a complete CUDA run came along in runs/gpu/gpu-suite.json, skipped (SUITE=1 runs it again)"
    else
      timeout "$(( $(left) * 2 / 5 ))" "$py" -m desra bench --suite gpu --device "$device" ${QUICK:+--quick} --json "$OUT/gpu-suite.json"
      echo "suite: exit $? after $(( $(date +%s) - start ))s"
    fi
    # ncnn -> safetensors (exact), before the processes start; the derived parent is rebuilt from its delta on use
    for name in "${PUBLISHED_A[@]:0:3}"; do desra models pull "$name" 2>&1 | tail -n 1; done
    row_jobs=()
    for name in "${PUBLISHED_A[@]}"; do rows "$name" "$name" & row_jobs+=($!); done
    wait "${row_jobs[@]}" ;;
  b|c)
    if [ "$part" = b ]; then name=RealSR-DF2K-x4 src=.gpu/b/DF2K; else name=RealSR-DF2K_JPEG-x4 src=.gpu/c/DF2K_JPEG; fi
    desra models import-ncnn "$src/x4.param" --name "$name" --role gan | tail -n 1
    rows "${DESRA_HOME:-$HOME/.cache/desra}/models/$name.safetensors" "$name" & rows_job=$!
    if [ "$part" = b ] && [ "${REPAIR:-1}" = 1 ]; then   # REPAIR=0 leaves the repairs out (smoke runs here)
      # The x4plus conversion of part a is still in the models cache while the machine is warm.
      if desra models pull RealESRGAN_x4plus > /dev/null 2>&1; then
        export PY=$py DESRA="$py -m desra"
        timeout "$(( $(left) - 20 ))" scripts/repair_length.sh realesrgan-x4-derived "$device" /tmp/repair-length > /dev/null 2> /tmp/repair-length.err
        echo "repair length: exit $? after $(( $(date +%s) - start ))s"; tail -n 3 /tmp/repair-length.err
        TABLE_ONLY=1 scripts/repair_length.sh realesrgan-x4-derived "$device" /tmp/repair-length > "$OUT/repair-length.md"
      else
        echo "repair length skipped: RealESRGAN_x4plus is not in the models cache (the machine went cold after part a)"
      fi
    fi
    wait "$rows_job" ;;
  *) echo "unknown part $part (a, b, c or merge)"; exit 2 ;;
esac
echo "== part $part done after $(( $(date +%s) - start ))s"
