#!/usr/bin/env bash
# The GPU checks of issues #4 and #7 as one prepared run (the device tool runs it in the repository
# root; DATA is the cats-vs-dogs folder carried along, OUT the folder whose files come back).
#   bash scripts/device_checks.sh DATA OUT
set -u
DATA=$1 OUT=$2
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import sys, torch; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name(0))"
  echo "cpus: $(nproc)"; date -u
  echo "== smoke: 2 epochs of the small default"
  timeout 120 python3 -m binclass.cli train "$DATA" --out /tmp/smoke --epochs 2 || { echo SMOKE FAILED; exit 1; }
  echo "== #4 bench: seed model, batch 20, 15 epochs, posted loop vs binclass train vs floors"
  timeout 300 python3 -m binclass.cli bench "$DATA" --epochs 15 --device cuda --json > "$OUT/bench.json"
  python3 -c "import json,sys; from binclass.bench import render; print(render(json.load(open(sys.argv[1]))))" "$OUT/bench.json"
  echo "== #7 default recipe, three seeds, one at a time (timed alone)"
  timeout 280 python3 scripts/sweep.py "$DATA" /tmp/seeds --plan scripts/gpu_seeds.txt --parallel 1
  cp /tmp/seeds/sweep.json "$OUT/seeds.json"
  echo "== #7 sweep: what the default was not measured against (gpu_next.txt), 8 at a time"
  timeout "${SWEEP_LIMIT:-200}" python3 scripts/sweep.py "$DATA" /tmp/sweep --plan "${PLAN:-scripts/gpu_next.txt}" --parallel 8
  cp /tmp/sweep/sweep.json "$OUT/sweep.json"
  date -u
} 2>&1 | tee "$OUT/log.txt"
tar czf "$OUT/runs.tgz" --exclude='*.safetensors' --exclude='*.png' --exclude='*.html' -C /tmp smoke seeds sweep 2>/dev/null
ls -la "$OUT"
