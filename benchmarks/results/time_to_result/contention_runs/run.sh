#!/bin/bash
# Issue 39, must-show 5: one InvertedPendulum-v5 run alone, then three identical runs started together, on the
# 2-core machine with nothing else running; each the default `make train` run (the preset, seed 0, the process's
# default threads). Usage: OUT=DIR run.sh ; writes DIR/alone-s0, DIR/together{1,2,3}-s0 and times.txt.
OUT=${OUT:-$HOME/rehearse-runs/contention}
cd "$(git rev-parse --show-toplevel)"
mkdir -p "$OUT"
one() { MUJOCO_GL=egl .venv/bin/python train_agent.py --env InvertedPendulum-v5 --seed 0 --run-dir "$OUT/$1" \
          --no-progress-bar > "$OUT/$1.log" 2>&1; }
start=$(date +%s.%N); one alone-s0; end=$(date +%s.%N)
echo "alone $(echo "$end - $start" | bc)" > "$OUT/times.txt"
start=$(date +%s.%N)
for k in 1 2 3; do ( one together$k-s0; echo "together$k $(echo "$(date +%s.%N) - $start" | bc)" >> "$OUT/times.txt" ) & done
wait
