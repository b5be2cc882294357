#!/usr/bin/env bash
# The science of issue 18, run again with decisive statistics: every run in one store, one
# after another, each resumed (not restarted) when this script is started again after an
# interruption or at the next session. Results JSON land in $OUT; run ids in $OUT/ids/.
#
#   bash bench/science_issue18.sh [STORE] [OUT]      # defaults: /work/science/store, /work/science
#   STEPS="l2_beta4 l1" bash bench/science_issue18.sh  # only these, in this order
#
# What runs (README "Results" says what each answered):
#   l0        level 0, the plan's settings, 10 seeds, with the shuffled control
#   l2_beta4  level 2 at beta = 4 (the collapse question), a selective gate (entropy 0.5),
#             the shuffled control, 5 seeds
#   l1        level 1, a selective gate (entropy 0.5), the shuffled control, 10 seeds
#   sweep_l0  the README's level-0 sweep (re-read with Benjamini-Hochberg per heatmap)
#   l3_*      level 3 at the small width in both configurations, a selective gate (entropy
#             0.5: at T = 1 the small width's masks are uniform), 5 seeds, 2,000 steps (what
#             fits beside the rest in one session on 2 cores)
set -uo pipefail
cd "$(dirname "$0")/.."
STORE=${1:-/work/science/store}
OUT=${2:-/work/science}
ACC=.venv/bin/acc
mkdir -p "$OUT/ids"

# run NAME ARGS...: start `acc run ARGS` once, and resume it by its id on every later call
# wanted NAME: whether STEPS (default: every step) names it
wanted() { [[ " ${STEPS:-l0 l2_beta4 l1 sweep_l0 l3_isolated l3_upstream} " == *" $1 "* ]]; }

run() {
  local name=$1
  wanted "$name" || return 0
  shift
  local ids="$OUT/ids/$name"
  if [[ -s $ids ]]; then
    echo "== $name: resuming $(cat "$ids")"
    $ACC run --resume "$(cat "$ids")" --store "$STORE" --workers 2 --threads 1 \
      --json "$OUT/$name.json" >>"$OUT/$name.log" 2>&1
  else
    echo "== $name: starting"
    $ACC run "$@" --store "$STORE" --workers 2 --threads 1 --name "issue 18: $name" \
      --json "$OUT/$name.json" >"$OUT/$name.log" 2>&1 &
    local pid=$!
    sleep 15  # the first line names the run
    grep -om1 '[0-9]\{8\}-[0-9]\{6\}-[a-z0-9_]*-[0-9a-f]*' "$OUT/$name.log" >"$ids"
    wait $pid
  fi
  echo "== $name: exit $? ($(date -u +%H:%M))"
}

sweep() {
  local name=$1
  wanted "$name" || return 0
  shift
  local ids="$OUT/ids/$name"
  if [[ -s $ids ]]; then
    $ACC sweep --resume "$(cat "$ids")" --store "$STORE" --workers 2 --threads 1 \
      --json "$OUT/$name.json" >>"$OUT/$name.log" 2>&1
  else
    $ACC sweep "$@" --store "$STORE" --workers 2 --threads 1 --json "$OUT/$name.json" \
      >"$OUT/$name.log" 2>&1 &
    local pid=$!
    sleep 15
    grep -om1 '[0-9]\{8\}-[0-9]\{6\}-sweep-[a-z0-9_]*-[0-9a-f]*' "$OUT/$name.log" >"$ids"
    wait $pid
  fi
  echo "== $name: exit $? ($(date -u +%H:%M))"
}

run l0 gradient_gating_l0 --num-seeds 10 -p controls=shuffled
run l2_beta4 gradient_gating_l2 --num-seeds 5 -p beta=4 -p temperature=entropy:0.5 \
  -p controls=shuffled --eval-every 2500
sweep sweep_l0 gradient_gating_l0 --grid temperature=0.3,0.5,1,2,5 \
  --grid gate_strength=0.25,0.5,0.75,1 --zip optimizer=adam,sgd --zip lr=0.001,5.0 \
  --seeds 42,123,456 --steps 10000 --eval-every 2000
run l1 gradient_gating_l1 --num-seeds 10 -p temperature=entropy:0.5 -p controls=shuffled \
  --eval-every 2500
run l3_isolated gradient_gating_l3 --num-seeds 5 -p width=small -p temperature=entropy:0.5 \
  --steps 2000 --eval-every 1000
run l3_upstream gradient_gating_l3 --num-seeds 5 -p width=small -p config=upstream \
  -p temperature=entropy:0.5 --steps 2000 --eval-every 1000
