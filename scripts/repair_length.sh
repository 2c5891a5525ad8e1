#!/bin/bash
# Issue 16, item 3: fingerprint distance of a DeSRA repair to its source GAN model against repair length
# (0, 100, 250, 500, 1000 iterations), docs/attribution.md "Repaired models".
#   scripts/repair_length.sh desra-demo-x4 cpu          # the embedded pair
#   scripts/repair_length.sh realesrgan-x4 cuda         # RealESRGAN_x4plus (with RealESRNet_x4plus as the MSE side)
# ROOT (3rd argument, default runs/repair-length/PAIR) gets one scripts/repair_demo.py run per length, the
# registered fingerprint of the pair's GAN model (ROOT/ws) and verify-N.json per length; rerunning resumes.
# TABLE_ONLY=1 prints the table of the lengths measured so far; PY and DESRA name the interpreter and CLI (default: .venv).
# Each repaired model.safetensors records its lineage (desra/models/lineage.py): verify prints it beside the verdict.
# The curated set is built once (in the first length's folder) and copied to the others. LENGTHS="2" smoke-tests.
set -euo pipefail
cd "$(dirname "$0")/.."
PAIR=${1:?usage: $0 PAIR [DEVICE] [ROOT]}
DEVICE=${2:-cpu}
ROOT=${3:-runs/repair-length/$PAIR}
py=${PY:-.venv/bin/python}
desra=${DESRA:-.venv/bin/desra}
LENGTHS=(${LENGTHS:-100 250 500 1000})
table() {  # the lengths measured so far (all of them after a full run)
  $py - "$ROOT" 0 "${LENGTHS[@]}" <<'EOF'
import json, sys
from pathlib import Path
root = Path(sys.argv[1])
print("| repair iterations | d | d / eta | p | verdict | lineage check |\n|---|---|---|---|---|---|")
for n in map(int, sys.argv[2:]):
    if not (root / f"verify-{n}.json").is_file():
        continue
    r = json.loads((root / f"verify-{n}.json").read_text())
    print(f"| {n} | {r['distance']:.3e} | {r['distance'] / r['eta']:.2f} | {r['p_value']:.3g} | "
          f"{'derived' if r['match'] else 'not derived'} | {r['lineage_check']['status']} |")
EOF
}
if [ -n "${TABLE_ONLY:-}" ]; then table; exit 0; fi
GAN=$($py -c "from desra.models.registry import get_pair; print(get_pair('$PAIR').gan)")
WS=(--workspace "$ROOT/ws")
mkdir -p "$ROOT"
if ! $desra fingerprint list "${WS[@]}" | grep -q "^$GAN"$'\t'; then
  OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} $desra fingerprint register "$GAN" --name "$GAN" --device "$DEVICE" "${WS[@]}"
fi
# length 0 is the source itself (d = 0 by construction; it checks the registration)
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} $desra fingerprint verify "$GAN" --against "$GAN" --json --device "$DEVICE" "${WS[@]}" > "$ROOT/verify-0.json"
FIRST=$ROOT/repair-${LENGTHS[0]}
for N in "${LENGTHS[@]}"; do
  OUT=$ROOT/repair-$N
  if [ ! -f "$OUT/run/model.safetensors" ]; then
    if [ ! -d "$OUT" ] && [ -f "$FIRST/set/manifest.sqlite" ]; then mkdir -p "$OUT" && cp -r "$FIRST/set" "$OUT/set"; fi
    resume=(); [ -d "$OUT" ] && resume=(--resume)
    OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} $py scripts/repair_demo.py --out "$OUT" --pair "$PAIR" --iters "$N" \
      --save-every "$(( N < 100 ? N : 50 ))" --device "$DEVICE" "${resume[@]}" > "$OUT.log" 2>&1
  fi
  OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} $desra fingerprint verify "$OUT/run/model.safetensors" --against "$GAN" --json \
    --device "$DEVICE" "${WS[@]}" > "$ROOT/verify-$N.json"
done
table
