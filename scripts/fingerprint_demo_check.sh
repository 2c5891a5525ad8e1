#!/bin/bash
# Verify the embedded GAN model's fingerprint against its three attacked copies, its DeSRA repair
# (scripts/repair_demo.py's run) and its MSE parent; verdicts go to runs/attribution/demo-check/*.json.
set -uo pipefail
cd "$(dirname "$0")/.."
D=runs/attribution/demo-check
W=$D/workspace
REPAIRED=${REPAIRED:-runs/repair-demo/run/model.safetensors}  # from: scripts/repair_demo.py --out runs/repair-demo
mkdir -p $D
export OMP_NUM_THREADS=1
desra() { echo "+ desra $*" >&2; nice .venv/bin/desra "$@"; }
desra fingerprint register weights/desra-demo-x4-gan.safetensors --name demo-gan --workspace $W --replace | tee $D/register.txt
desra fingerprint verify "$REPAIRED" --against demo-gan --workspace $W --json | tee $D/repaired.json
desra fingerprint verify weights/desra-demo-x4-mse.safetensors --against demo-gan --workspace $W --json | tee $D/mse-parent.json
desra fingerprint attack weights/desra-demo-x4-gan.safetensors --against demo-gan --workspace $W --json | tee $D/attacks.json
