#!/bin/bash
# usage: OUT=DIR run.sh NAME SEED [flags...]   (one InvertedPendulum-v5 run, one thread)
OUT=${OUT:-$HOME/rehearse-runs/ipx}
name=$1; seed=$2; shift 2
cd "$(git rev-parse --show-toplevel)"
OMP_NUM_THREADS=1 MUJOCO_GL=egl .venv/bin/python train_agent.py --env InvertedPendulum-v5 --seed $seed \
  --run-dir $OUT/$name-s$seed --no-progress-bar "$@" > $OUT/$name-s$seed.log 2>&1
# The runs of README.md ("The InvertedPendulum preset"), B and C on commit 2da9864, ns on b328a2a (the same code for ns's settings), with the flags below
# (B is what agent/presets/InvertedPendulum-v5.yaml now holds: run.sh B SEED with no flags gives the same config):
#   ns: run.sh ns SEED --robotics-continuation-from next_state
#   B:  run.sh B SEED --robotics-continuation-from next_state --planner-eval-num-candidates 16 --planner-eval-iterations 1
#   C:  B's flags and --train-gradient-steps 2
#   P:  run.sh P SEED --planner-pessimism 1.0   (on the preset of commit edbe3d3, which is B)
#   V:  run.sh V SEED --value-batch-size 256   (on the preset of commit ccf3f8c, which is B; two runs at once, one thread each)
