#!/bin/bash
# IP-v5 preset, 3 seeds one after another, default threads (process: 2; training loop: 1 via train.loop_threads 0)
cd /work/main
for s in 0 1 2; do
  echo "seed $s start $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
  /usr/bin/time -v env MUJOCO_GL=egl .venv/bin/python train_agent.py --env InvertedPendulum-v5 --seed $s --run-dir ~/rehearse-runs/ip39/s$s > ~/rehearse-runs/ip39/s$s.log 2>&1
  echo "seed $s end $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
done
