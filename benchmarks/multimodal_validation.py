"""Choose the multimodal model's training settings on validation scenes, never on the frozen test sets.

Trains :class:`~world_models.multimodal.MultimodalWorldModelLLM`'s projections on a task's training scenes (as
:mod:`benchmarks.physical_reasoning` does, over the world model a full run saved) and scores its answers in
words on a validation set drawn from other seeds (towers from seed 77, throws from seed 500,000; the test sets
use 38 and 1,000,000) after each of ``--evals`` steps, beside the world-model probe on the same scenes:

    python -m benchmarks.multimodal_validation --task ball --world-model DIR/models/ball_world_model.pt \\
        --evals 200 400 600 --outcome-weight 1 --bf16 --out ball_w1.csv

Training pauses at each evaluation and goes on with a new optimizer (Adam's moments start again), so a row's
model is close to, not the same as, a run of that many steps. Writes one CSV row per evaluation: ``step``,
``accuracy``, ``probe_accuracy``, ``train_seconds``.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks import physical_reasoning as pr
from benchmarks.ball_question import QUESTION as BALL_QUESTION
from benchmarks.ball_question import SEEN, STACK, ball_questions, bins_of, probed_landings
from envs.block_tower import tower_pairs
from world_models.latent import LatentWorldModel
from world_models.multimodal import MultimodalWorldModelLLM, load_smollm2

__all__ = ["main"]

VALIDATION_SEEDS = {"tower": 77, "ball": 500_000}
"""Each task's validation seed: the towers' generator seed (training uses 0, the test set 38), the first
throw's reset seed (training throws use 0.., the test set 1,000,000..)."""


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", choices=["tower", "ball"], required=True)
    p.add_argument("--world-model", type=Path, required=True, help="a full run's models/<task>_world_model.pt")
    p.add_argument("--evals", type=int, nargs="+", required=True, help="steps after which to score (increasing)")
    p.add_argument("--out", type=Path, required=True, help="the CSV to write")
    p.add_argument("--train", type=int, default=None, help="tower pairs (500) or throws (2000) to train on")
    p.add_argument("--validation", type=int, default=None, help="tower pairs (100) or throws (300) to score")
    p.add_argument("--outcome-weight", type=float, default=0.0)
    p.add_argument("--hidden-layers", type=int, default=1)
    p.add_argument("--outcome-pretrain", type=int, default=0, metavar="STEPS",
                   help="the outcome head's first training stage (needs --outcome-weight > 0)")
    p.add_argument("--visual-noise", type=float, default=0.0)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    if sorted(set(args.evals)) != args.evals or args.evals[0] < 1:
        p.error(f"--evals must be increasing step counts >= 1, got {args.evals}")
    if args.outcome_pretrain and args.outcome_weight <= 0:
        p.error("--outcome-pretrain trains the outcome head: give it --outcome-weight > 0 as well")
    if args.train is None:
        args.train = 500 if args.task == "tower" else 2000
    if args.validation is None:
        args.validation = 100 if args.task == "tower" else 300
    if args.task == "ball" and args.train > VALIDATION_SEEDS["ball"]:  # throws i are reset with seed i
        p.error(f"--train {args.train} would reach the validation throws' seeds ({VALIDATION_SEEDS['ball']}..)")
    return args


def _lesson_and_scenes(args: argparse.Namespace, world: LatentWorldModel
                       ) -> tuple[pr.Lesson, np.ndarray, np.ndarray, str, float]:
    """The training lesson, the validation scenes and truths, the question and the probe's validation accuracy."""
    seed = VALIDATION_SEEDS[args.task]
    head = args.outcome_weight > 0
    if args.task == "tower":
        train = tower_pairs(args.train, 0, frames=pr._FRAMES)
        val = tower_pairs(args.validation, seed, frames=pr._FRAMES)
        hits = pr.tower_probe_says(world, train, val, 0) == val.fell
        return pr.tower_lesson(train, head), val.frames[:, :1], val.fell, pr.QUESTION, float(np.mean(hits))
    throws, held = ball_questions(args.train, 0), ball_questions(args.validation, seed)
    hits = bins_of(probed_landings(world, throws, held, 0)) == held.answers
    return pr.ball_lesson(throws, head), held.seen_frames(), held.answers, BALL_QUESTION, float(np.mean(hits))


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    torch.set_num_threads(args.threads)
    world = pr._load_world_model(args.world_model, 1 if args.task == "tower" else STACK,
                                 f"run python -m benchmarks.physical_reasoning --tasks {args.task} first")
    lesson, scenes, truth, question, probe_accuracy = _lesson_and_scenes(args, world)
    backbone, tokenizer = load_smollm2()
    layout = {"imagine_steps": 0} if args.task == "tower" else {"tokens_per_frame": 1, "joint_frames": SEEN}
    model = MultimodalWorldModelLLM(world, backbone, tokenizer, question_first=True, bf16=args.bf16,
                                    outcome_dim=int(args.outcome_weight > 0), visual_noise=args.visual_noise,
                                    hidden_layers=args.hidden_layers, **layout)
    rows, done, seconds = [], 0, 0.0
    standardise = args.task == "ball"
    if args.outcome_pretrain:
        started = time.time()
        pr.pretrain_outcome(model, lesson, args.outcome_pretrain, seed=0, standardise=standardise)
        seconds, standardise = time.time() - started, False
    for step in args.evals:
        started = time.time()
        pr.train_multimodal(model, lesson, step - done, args.batch, seed=done, lr=args.lr,
                            outcome_weight=args.outcome_weight, standardise=standardise and done == 0,
                            trunk=not args.outcome_pretrain)
        seconds += time.time() - started
        done = step
        scored = pr._answers_scored(pr.answer_multimodal(model, scenes, question), truth, args.task)
        rows.append({"step": step, "accuracy": scored["accuracy"], "probe_accuracy": probe_accuracy,
                     "train_seconds": round(seconds, 1)})
        print(f"[validation] step {step}: multimodal {scored['accuracy']:.3f}, probe {probe_accuracy:.3f}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
