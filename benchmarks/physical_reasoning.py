"""Physical reasoning in words: "will this tower of blocks fall?" and "where will the ball land?", each answered
five ways and tabled.

    python -m benchmarks.physical_reasoning --out benchmarks/results/physical_reasoning

Per task (``--tasks tower ball``):

1. Question sets. Tower (:func:`envs.block_tower.tower_pairs`): balanced matched pairs of towers. Ball
   (:mod:`benchmarks.ball_question`): BallCatch throws seen for their first 10 frames, answered with the landing
   bin. The training set comes from ``--seed``, the frozen test set from the test seed; its SHA-256 is checked
   against :data:`FROZEN_TEST_SETS` / :data:`FROZEN_BALL_SETS` when its size is listed there, and written to
   ``results.json``.
2. World model: a JEPA :class:`~world_models.latent.LatentWorldModel` trained on the training scenes' movies by
   :func:`benchmarks.ball_probe.train_model` (towers: 9 frames, 0.25 s apart, the action ignored; throws: their
   frames with the one before each stacked, under the basket's actions).
3. World-model methods. Tower: an MLP classifier from the initial frame's latent to "fell", and the imagination
   answer (the initial latent rolled 8 steps forward, "fell" read off the imagined latent by a classifier fitted
   on the encodings of the real final frames). Ball: an MLP from the seen frames' latents to the landing x, and
   the landing read off the imagined flight (:mod:`benchmarks.ball_question`).
4. Language model alone: SmolLM2-135M-Instruct given the scene in words (each block's offset in cm; the ball's
   positions in the seen frames), zero-shot, greedy; its answer parsed by
   :func:`world_models.multimodal.parse_yes_no` / :func:`~world_models.multimodal.parse_bin` (unparsed answers
   count as wrong).
5. Multimodal model: the same SmolLM2, frozen, reading the world model's tokens through trained projections
   (:class:`~world_models.multimodal.MultimodalWorldModelLLM`; towers: the initial frame and the imagined final
   latent; throws: the seen frames, projected together); its greedy answer in words, parsed the same way.

Every accuracy comes with a 95% Wilson interval. The seed's GPT-4, GPT-4V and human figures are quoted from
the seed, not measured here. A run keeps the records of the tasks it does not run from ``<out>/results.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from agent.atomic import atomic_write
from agent.checkpoint import CheckpointError, load_module_state, read_weights
from benchmarks.ball_probe import Probe, Throws, _new_model, train_model
from benchmarks.ball_probe import _encode as encode_frames
from benchmarks.ball_question import QUESTION as BALL_QUESTION
from benchmarks.ball_question import (
    SEEN,
    STACK,
    BallQuestions,
    ball_questions,
    bins_of,
    imagined_landings,
    probed_landings,
)
from benchmarks.stats import wilson_interval
from envs.ball_catch import LANDINGS
from envs.block_tower import BlockTowerEnv, TowerSet, tower_pairs
from world_models.latent import LatentWorldModel
from world_models.multimodal import MultimodalWorldModelLLM, load_smollm2, parse_bin, parse_yes_no

__all__ = ["FROZEN_BALL_SETS", "FROZEN_TEST_SETS", "QUESTION", "SEED_FIGURES", "Lesson", "answer_multimodal",
           "fit_classifier", "load_reasoner", "main", "tower_throws", "train_multimodal"]

QUESTION = "Will this tower of blocks fall? Answer yes or no."
SEED_FIGURES = {"tower": {"GPT-4 (text only)": 0.38, "GPT-4V": 0.55, "human": 0.89},
                "ball": {"GPT-4 (text only)": 0.29, "GPT-4V": 0.44, "human": 0.92}}
"""The seed's closing table (quoted, not measured here)."""

_FRAMES = 9  # per tower movie: the initial scene, then every 0.25 s up to 2 s
_IMAGINE_STEPS = _FRAMES - 1  # the multimodal model also reads the latent imagined 2 s ahead

FROZEN_TEST_SETS: dict[tuple[int, int], str] = {
    (3, 38): "ede86ddf87cad6de2004bb739c17b478291b0c4205bd97267843cc063f2bb706",
    (250, 38): "a2628fc8a399a2f2d8cad8b199ac49f3bfe92ede1b7595195ccb8b8e44915682",  # the committed results' test set
}
"""``(pairs, seed)`` of a tower test set -> the SHA-256 its towers, labels and frames must have."""

FROZEN_BALL_SETS: dict[tuple[int, int], str] = {
    (3, 1_000_000): "dae7dc63f03643aecb1915d2214758ed9503c1bb913314737b6aab612afcc2e9",
    (1000, 1_000_000): "97ee2f30090c9a11a640637255a36ee307d5b2af8f2ce959cb68db85d132ac54",  # the committed results'
}
"""``(throws, seed)`` of a ball test set -> the SHA-256 its seen frames, tracks and landings must have."""


def tower_throws(towers: TowerSet) -> Throws:
    """The towers' movies as :class:`~benchmarks.ball_probe.Throws` (zero actions and rewards, no ball), the
    episode container :func:`~benchmarks.ball_probe.train_model` trains a world model on."""
    steps = towers.frames.shape[1] - 1
    return Throws(frames=list(towers.frames), actions=[np.zeros((steps, 1), np.float32)] * len(towers.towers),
                  rewards=[np.zeros(steps, np.float32)] * len(towers.towers),
                  ball=[np.zeros((steps + 1, 2))] * len(towers.towers), landing_bin=towers.fell.astype(int),
                  landing_x=np.zeros(len(towers.towers)))


def fit_classifier(features: np.ndarray, labels: np.ndarray, seed: int, steps: int = 3000) -> Probe:
    """An MLP ``(M, Z) -> (M, 1)`` logit of ``labels`` ``(M,)`` bool, on standardised features (BCE, Adam)."""
    mean, std = features.mean(axis=0), features.std(axis=0) + 1e-8
    x = torch.as_tensor((features - mean) / std, dtype=torch.float32)
    y = torch.as_tensor(labels, dtype=torch.float32)
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 128), torch.nn.SiLU(), torch.nn.Linear(128, 1))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        rows = torch.randint(0, len(x), (128,), generator=generator)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x[rows])[:, 0], y[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return Probe(mean, std, net=net.eval())


def _encode(model: LatentWorldModel, frames: np.ndarray) -> np.ndarray:
    """Latents ``(M, Z)`` float64 of frames ``(M, Hp, Wp, C)`` uint8 (:func:`benchmarks.ball_probe._encode`)."""
    return encode_frames(model, np.ascontiguousarray(frames)).numpy().astype(np.float64)


def _imagined_final(model: LatentWorldModel, frames: np.ndarray, steps: int) -> np.ndarray:
    """Latents ``(M, Z)`` imagined ``steps`` steps (zero actions) after the initial frames ``(M, 64, 64, 3)``."""
    z0 = torch.as_tensor(_encode(model, frames), dtype=torch.float32)
    with torch.inference_mode():
        return model.rollout(z0, torch.zeros(steps, len(z0), model.action_dim))[-1].numpy().astype(np.float64)


def _score(hits: list[bool] | np.ndarray) -> dict[str, Any]:
    k, n = int(np.sum(hits)), len(hits)
    low, high = wilson_interval(k, n)
    return {"accuracy": k / n, "correct": k, "n": n, "wilson95": [low, high]}


class _Cost:
    """Wall-clock seconds and the process's peak resident memory (MiB) after each named part."""

    def __init__(self) -> None:
        self.parts: dict[str, dict[str, float]] = {}

    def record(self, name: str, started: float) -> None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        self.parts[name] = {"seconds": round(time.time() - started, 1), "peak_rss_mib_so_far": round(peak, 1)}
        print(f"[cost] {name}: {self.parts[name]}", flush=True)


def tower_probe_says(model: LatentWorldModel, train: TowerSet, test: TowerSet, seed: int,
                     probe_steps: int = 3000) -> np.ndarray:
    """``(M,)`` bool: the world-model probe's "falls" for each test tower, a classifier of the initial frame's
    latent fitted on the training towers."""
    initial = fit_classifier(_encode(model, train.frames[:, 0]), train.fell, seed, probe_steps)
    return np.asarray(initial(_encode(model, test.frames[:, 0]))[:, 0] > 0)


def _world_model_methods(model: LatentWorldModel, train: TowerSet, test: TowerSet, seed: int,
                         probe_steps: int) -> dict[str, Any]:
    steps = _IMAGINE_STEPS
    final = fit_classifier(_encode(model, train.frames[:, -1]), train.fell, seed, probe_steps)
    probe_says = tower_probe_says(model, train, test, seed, probe_steps)
    imagined_says = final(_imagined_final(model, test.frames[:, 0], steps))[:, 0] > 0
    return {"world-model probe (initial latent)": _score(probe_says == test.fell),
            "world-model imagination (8 steps, probe on the imagined latent)": _score(imagined_says == test.fell)}


def _text_prompts(tokenizer: Any, scenes: list[str], question: str) -> list[str]:
    """Chat prompts of each scene in words and the question; the tokenizer set to pad on the left."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return [f"<|im_start|>user\n{scene} {question}<|im_end|>\n<|im_start|>assistant\n" for scene in scenes]


def _language_alone(backbone: torch.nn.Module, tokenizer: Any, scenes: list[str], question: str,
                    batch: int = 16) -> list[str]:
    """SmolLM2's answers to ``question`` about each scene in words; greedy, 4 new tokens, left-padded batches."""
    prompts = _text_prompts(tokenizer, scenes, question)
    answers: list[str] = []
    for i in range(0, len(prompts), batch):
        enc = tokenizer(prompts[i:i + batch], return_tensors="pt", padding=True)
        with torch.inference_mode():
            out = backbone.generate(**enc, max_new_tokens=4, do_sample=False,  # type: ignore[operator]
                                    pad_token_id=tokenizer.pad_token_id)
        answers += [tokenizer.decode(row[enc.input_ids.shape[1]:], skip_special_tokens=True).strip() for row in out]
    return answers


def _language_choice(backbone: torch.nn.Module, tokenizer: Any, scenes: list[str], question: str,
                     choices: list[str], batch: int = 16) -> list[str]:
    """SmolLM2's forced choice: for each scene, the one of ``choices`` (each a single token) whose token it gives
    the highest next-token logit at the start of its answer."""
    ids = [tokenizer(c, add_special_tokens=False).input_ids for c in choices]
    if any(len(i) != 1 for i in ids):
        raise ValueError(f"each choice must be one token, got {dict(zip(choices, ids, strict=True))}")
    prompts = _text_prompts(tokenizer, scenes, question)
    picked: list[str] = []
    for i in range(0, len(prompts), batch):
        enc = tokenizer(prompts[i:i + batch], return_tensors="pt", padding=True)
        with torch.inference_mode():
            logits = backbone(**enc, logits_to_keep=1).logits[:, -1, [i[0] for i in ids]]  # (B, choices)
        picked += [choices[j] for j in logits.argmax(dim=1).tolist()]
    return picked


_ALONE = "SmolLM2-135M alone"
_AS_TEXT = {"tower": ("tower as text", "yes/no"), "ball": ("the seen flight as text", "a bin")}


def _language_rows(backbone: torch.nn.Module, tokenizer: Any, scenes: list[str], question: str, truth: np.ndarray,
                   task: str, choices: list[str], cost: _Cost) -> dict[str, Any]:
    """The language model alone on the scenes in words: its free answers and its forced choice, scored."""
    as_text, choice = _AS_TEXT[task]
    started = time.time()
    free = _answers_scored(_language_alone(backbone, tokenizer, scenes, question), truth, task)
    cost.record("language model alone: answer the test set", started)
    started = time.time()
    forced = _answers_scored(_language_choice(backbone, tokenizer, scenes, question, choices), truth, task)
    cost.record("language model alone: forced choice", started)
    return {f"{_ALONE} ({as_text})": free, f"{_ALONE}, forced choice of {choice} ({as_text})": forced}


def _language_rows_from(path: Path, task: str, digest: str, cost: _Cost) -> dict[str, Any]:
    """The language-model-alone rows of ``task`` in an earlier ``results.json``, each marked with the command
    that measured it, and their costs; SystemExit when that run asked another test set or has no such rows.
    (They depend on the test set and the language model only, not on the world model or the projections.)"""
    if not path.is_file():
        raise SystemExit(f"physical_reasoning: --language-alone-from found no results file at {path}")
    record = _earlier_tasks(path).get(task, {})
    if record.get("test_sha256") != digest:
        raise SystemExit(f"physical_reasoning: {path} holds no {task} record of this test set (SHA-256 "
                         f"{digest[:16]}...); measure the language model alone again (drop --language-alone-from)")
    rows = {name: {**r, "measured_by": r.get("measured_by", record["command"])}  # the run that measured it
            for name, r in record["methods"].items() if name.startswith(_ALONE)}
    if not rows:
        raise SystemExit(f"physical_reasoning: {path}'s {task} record has no '{_ALONE}' rows; measure them here "
                         "(drop --language-alone-from)")
    for name, c in record.get("cost", {}).items():
        if name.startswith("language model alone"):  # marked once, by the first run that reused it
            threads = record.get("threads", "?")
            cost.parts[name if "earlier run" in name else f"{name} (earlier run, {threads} thread(s))"] = c
    return rows


def _answers_scored(answers: list[str], truth: np.ndarray, task: str) -> dict[str, Any]:
    """Accuracy of answers in words against ``truth`` (tower: ``(M,)`` bool fell; ball: ``(M,)`` bin 1..4);
    an answer that names no yes/no (no bin) counts as wrong."""
    parsed: list[Any] = [parse_yes_no(a) if task == "tower" else parse_bin(a) for a in answers]
    scored = _score([p is not None and p == t for p, t in zip(parsed, truth.tolist(), strict=True)])
    scored["unparsed"] = sum(p is None for p in parsed)
    if task == "tower":
        scored["said_yes"] = sum(p is True for p in parsed)
    else:
        scored["answered_bins"] = {str(b): sum(p == b for p in parsed) for b in range(1, LANDINGS + 1)}
    scored["examples"] = answers[:6]
    return scored


def _answer_ids(tokenizer: Any, answers: list[str]) -> torch.Tensor:
    """``(M, La)`` token ids of ``answer<|im_end|>`` per scene (every answer must tokenise to one length)."""
    ids = {a: tokenizer(f"{a}<|im_end|>", return_tensors="pt").input_ids[0] for a in sorted(set(answers))}
    if len({len(v) for v in ids.values()}) != 1:
        raise ValueError(f"the answers tokenise to different lengths ({ids}); the batch needs one length")
    return torch.stack([ids[a] for a in answers])


@dataclass
class Lesson:
    """What the multimodal model learns from: ``scenes`` ``(M, F, Hp, Wp, C)`` uint8 it sees, the ``answers``
    in words, ``later`` ``(M, Hp, Wp, C)`` uint8 the frame its ``llm_to_visual`` latent should encode, and the
    ``question`` asked; ``outcome`` ``(M, O)`` float, what the model's outcome head should read from each scene
    (e.g. the landing x; None: no such lesson)."""

    scenes: np.ndarray
    answers: list[str]
    later: np.ndarray
    question: str
    outcome: np.ndarray | None = None


def tower_lesson(towers: TowerSet, outcome: bool = False) -> Lesson:
    """The tower lesson: each tower's initial frame, "yes"/"no" it falls, the last frame, :data:`QUESTION`; with
    ``outcome``, whether it fell (1.0/0.0) for the outcome head."""
    return Lesson(towers.frames[:, :1], ["yes" if f else "no" for f in towers.fell], towers.frames[:, -1], QUESTION,
                  towers.fell.astype(np.float32)[:, None] if outcome else None)


def ball_lesson(questions: BallQuestions, outcome: bool = False) -> Lesson:
    """The ball lesson: each throw's seen frames, its landing bin in words, the next frame, the ball question;
    with ``outcome``, the landing x (m) for the outcome head."""
    return Lesson(questions.seen_frames(), [str(a) for a in questions.answers], questions.next_frames(),
                  BALL_QUESTION, questions.throws.landing_x[:, None] if outcome else None)


def train_multimodal(model: MultimodalWorldModelLLM, lesson: Lesson, steps: int, batch: int, seed: int,
                     lr: float = 1e-3, next_latent_weight: float = 1.0, standardise: bool = False,
                     outcome_weight: float = 1.0, trunk: bool = True) -> list[dict[str, float]]:
    """Train the projections: the answers' cross-entropy after each scene and the question, plus the error of
    the latent ``llm_to_visual`` predicts against the world model's encoding of the later frame, plus (a model
    with an outcome head and a lesson with ``outcome``) ``outcome_weight`` times the head's squared error on
    the standardised outcome. With ``standardise``, the latents are standardised on (up to 512 of) the scenes
    first. ``trunk=False`` keeps ``visual_to_llm``'s hidden layers and the outcome head as they are (after
    :func:`pretrain_outcome`) and trains the layer that makes the language model's vectors, the markers and
    ``llm_to_visual`` only."""
    prefix, question = model.prompt_parts(lesson.question)
    cache = model.cache_prefix(prefix) if model.question_first else None
    answers = _answer_ids(model.tokenizer, lesson.answers)
    scenes = torch.from_numpy(np.ascontiguousarray(lesson.scenes))
    if standardise:
        _standardise(model, scenes, seed)
    later = torch.as_tensor(_encode(model.world_model, lesson.later), dtype=torch.float32)
    target = _standardised_outcome(model, lesson)
    torch.manual_seed(seed)  # the training-time noise on the visual vectors (visual_noise)
    optimizer = torch.optim.Adam(model.trainable_parameters(trunk), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    history: list[dict[str, float]] = []
    model.train()
    for step in range(1, steps + 1):
        rows = torch.randint(0, len(answers), (batch,), generator=generator)
        text = torch.cat([question.expand(batch, -1), answers[rows]], dim=1)
        out = model.forward_with_visual_context(text, scenes[rows], predict_next_frame=True,
                                                prefix_tokens=prefix.expand(batch, -1), prefix_cache=cache,
                                                logits_to_keep=answers.shape[1] + 1)
        answer_loss = torch.nn.functional.cross_entropy(out.logits[:, :-1].flatten(0, 1), answers[rows].flatten())
        assert out.next_latent is not None
        latent_loss = (out.next_latent - later[rows]).pow(2).mean()
        losses = {"answer_loss": answer_loss, "next_latent_loss": latent_loss}
        loss = answer_loss + next_latent_weight * latent_loss
        if target is not None and out.outcome is not None and trunk:
            losses["outcome_loss"] = (out.outcome - target[rows]).pow(2).mean()
            loss = loss + outcome_weight * losses["outcome_loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 10 == 0 or step == steps:
            _log_step(history, "multimodal", step, losses, 3)
    model.eval()
    return history


def _log_step(history: list[dict[str, float]], stage: str, step: int, losses: dict[str, torch.Tensor],
              digits: int) -> None:
    """Append a training step's losses to ``history`` and print them (names without ``_loss``)."""
    history.append({"step": step, **{k: v.item() for k, v in losses.items()}})
    print(f"  [{stage}] step {step}: " + " ".join(f"{k.removesuffix('_loss')}={v.item():.{digits}f}"
                                                 for k, v in losses.items()), flush=True)


def _standardise(model: MultimodalWorldModelLLM, scenes: torch.Tensor, seed: int) -> None:
    """Set the model's latent standardisation from up to 512 of ``scenes``, drawn with ``seed``."""
    sample = torch.randperm(len(scenes), generator=torch.Generator().manual_seed(seed))[:512]
    model.standardise_latents(scenes[sample])


def pretrain_outcome(model: MultimodalWorldModelLLM, lesson: Lesson, steps: int, seed: int, batch: int = 128,
                     lr: float = 1e-3, standardise: bool = False) -> list[dict[str, float]]:
    """The first of two training stages, before the language model takes part (as a vision-language model first
    aligns its projector), from latents computed once: the projection's first hidden layer and the outcome head
    learn the lesson's standardised outcome (squared error), and its last hidden layer learns to tell the
    answers apart (cross-entropy of a linear classifier over the distinct answers, used in this stage only and
    then dropped); AdamW with a cosine schedule, ``batch`` scenes a step. The layer that makes the language
    model's vectors is left to ``train_multimodal(..., trunk=False)``, which trains it (with the markers and
    ``llm_to_visual``) on the answers in words and keeps what this stage fitted. With ``standardise``, the
    latents are standardised on (up to 512 of) the scenes first."""
    target = _standardised_outcome(model, lesson)
    if target is None or model.visual_to_outcome is None:
        raise ValueError("pretraining the outcome needs a model with an outcome head (outcome_dim=O) and a lesson "
                         "with outcomes (M, O)")
    scenes = torch.from_numpy(np.ascontiguousarray(lesson.scenes))
    if standardise:
        _standardise(model, scenes, seed)
    latents = torch.cat([model.visual_latents(scenes[i:i + 64]) for i in range(0, len(scenes), 64)])  # (M, F', Z)
    kinds = sorted(set(lesson.answers))
    labels = torch.tensor([kinds.index(a) for a in lesson.answers])
    last = model.visual_to_llm[-1]
    assert isinstance(last, torch.nn.Linear)
    classifier = torch.nn.Linear(last.in_features, len(kinds))  # dropped after this stage
    optimizer = torch.optim.AdamW([*model.trunk_parameters(), *classifier.parameters()], lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    generator = torch.Generator().manual_seed(seed)
    history: list[dict[str, float]] = []
    model.train()
    for step in range(1, steps + 1):
        rows = torch.randint(0, len(latents), (batch,), generator=generator)
        hidden = model.hidden_of(latents[rows])
        losses = {"outcome_loss": (model.outcome_of(hidden) - target[rows]).pow(2).mean(),
                  "class_loss": torch.nn.functional.cross_entropy(classifier(model.visual_to_llm[2:-1](hidden)),
                                                                  labels[rows])}
        optimizer.zero_grad()
        sum(losses.values()).backward()  # type: ignore[union-attr]
        optimizer.step()
        schedule.step()
        if step % 500 == 0 or step == steps:
            _log_step(history, "outcome pretraining", step, losses, 4)
    model.eval()
    return history


def _standardised_outcome(model: MultimodalWorldModelLLM, lesson: Lesson) -> torch.Tensor | None:
    """The lesson's outcomes ``(M, O)``, standardised per column, for a model with an outcome head (else None);
    ValueError when one of the two is there without the other or their widths differ."""
    head = model.visual_to_outcome
    if head is None and lesson.outcome is None:
        return None
    if head is None or lesson.outcome is None:
        raise ValueError("an outcome head needs a lesson with outcomes and the other way round: build the model "
                         "with outcome_dim=O and give the Lesson outcome (M, O), or neither")
    outcome = torch.as_tensor(lesson.outcome, dtype=torch.float32).reshape(len(lesson.answers), -1)
    if outcome.shape[1] != head.out_features:
        raise ValueError(f"the lesson has {outcome.shape[1]} outcome(s) per scene, the head {head.out_features}")
    return (outcome - outcome.mean(dim=0)) / outcome.std(dim=0).clamp_min(1e-6)


def answer_multimodal(model: MultimodalWorldModelLLM, scenes: np.ndarray, question: str,
                      batch: int = 32) -> list[str]:
    """Greedy answers in words (at most 3 tokens) to ``question`` about each scene ``(M, F, Hp, Wp, C)`` uint8."""
    prefix, question_ids = model.prompt_parts(question)
    cache = model.cache_prefix(prefix) if model.question_first else None
    stop = model.tokenizer.convert_tokens_to_ids("<|im_end|>")
    answers: list[str] = []
    for i in range(0, len(scenes), batch):
        frames = torch.from_numpy(np.ascontiguousarray(scenes[i:i + batch]))
        b = len(frames)
        ids = model.generate(prefix.expand(b, -1), question_ids.expand(b, -1), frames, max_new_tokens=3, stop_id=stop,
                             prefix_cache=cache)
        answers += [model.tokenizer.decode(row, skip_special_tokens=True).strip() for row in ids]
    return answers


def _check_frozen(digest: str, recorded: dict[tuple[int, int], str], size: int, seed: int, what: str) -> str:
    expected = recorded.get((size, seed))
    if expected and expected != digest:
        raise SystemExit(f"physical_reasoning: the frozen test set ({size} {what}, seed {seed}) changed: "
                         f"SHA-256 {digest}, recorded {expected}. The data generator changed; if on purpose, "
                         "record the new digest in FROZEN_TEST_SETS or FROZEN_BALL_SETS and say why in the commit")
    return digest


_TITLES = {"tower": "Will the tower fall?", "ball": "Where will the ball land?"}


def _task_lines(task: str, record: dict[str, Any]) -> list[str]:
    if task == "tower":
        n = record["test_towers"]
        about = (f"{n} held-out towers ({n // 2} matched pairs, half fall; test seed {record['test_seed']}, SHA-256 "
                 f"`{record['test_sha256'][:16]}...`), trained on {record['train_towers']} towers.")
    else:
        about = (f"{record['test_throws']} held-out throws (test seeds from {record['test_seed']}, SHA-256 "
                 f"`{record['test_sha256'][:16]}...`), each seen for its first {record['frames_seen']} frames; "
                 f"trained on {record['train_throws']} throws. Four landing bins: chance 25%.")
    lines = [f"## {_TITLES[task]}", "", f"Command: `{record['command']}`", "", about + " Accuracy with 95% Wilson "
             "interval.", "", "| method | accuracy | 95% interval | notes |", "|---|---|---|---|"]
    for name, r in record["methods"].items():
        notes = []
        if "said_yes" in r:
            notes.append(f"{r['unparsed']} unparsed, said yes {r['said_yes']}/{r['n']}")
        if "answered_bins" in r:
            counts = ", ".join(f"{b}: {c}" for b, c in r["answered_bins"].items())
            notes.append(f"{r['unparsed']} unparsed; answered bins {counts}")
        if "measured_by" in r:
            notes.append("measured by an earlier run on the same test set (`--language-alone-from`)")
        lines.append(f"| {name} | {100 * r['accuracy']:.1f}% | {100 * r['wilson95'][0]:.1f}-"
                     f"{100 * r['wilson95'][1]:.1f}% | {'; '.join(notes)} |")
    for name, value in SEED_FIGURES[task].items():
        lines.append(f"| {name}: quoted from the seed, not measured here | {100 * value:.0f}% | - | |")
    lines += ["", f"Training cost on this CPU ({record['threads']} thread(s); peak = the process's resident memory "
              "so far):", "", "| part | seconds | peak RSS MiB |", "|---|---|---|"]
    for name, c in record["cost"].items():
        lines.append(f"| {name} | {c['seconds']:.0f} | {c['peak_rss_mib_so_far']:.0f} |")
    return [*lines, ""]


def _markdown(results: dict[str, Any]) -> str:
    lines = ["# Physical reasoning in words", ""]
    for task in ("tower", "ball"):
        if task in results["tasks"]:
            lines += _task_lines(task, results["tasks"][task])
    return "\n".join(lines)


def _earlier_tasks(path: Path) -> dict[str, Any]:
    """The task records of an earlier ``results.json`` (one run's command, threads and cost moved into its
    task record where an older file kept them at the top), or none."""
    if not path.is_file():
        return {}
    earlier = json.loads(path.read_text())
    tasks: dict[str, Any] = earlier.get("tasks", {})
    for record in tasks.values():
        for key in ("command", "threads", "cost"):
            if key not in record and key in earlier:
                record[key] = earlier[key]
    return tasks


def _earlier_world_model(out: Path, task: str, cost: _Cost) -> list[dict[str, float]]:
    """The training history of the world model an earlier run saved under ``out`` for ``task``, from its record
    in ``out/results.json``, and that training's cost, marked as the earlier run's (nothing if no record)."""
    record = _earlier_tasks(out / "results.json").get(task, {})
    for name, trained in record.get("cost", {}).items():
        if name == "world model (JEPA)":
            cost.parts[f"world model (JEPA; earlier run, {record.get('threads', '?')} thread(s))"] = trained
        elif name.startswith("world model (JEPA; earlier run"):  # that run reused it too
            cost.parts[name] = trained
    history: list[dict[str, float]] = record.get("world_model_history", [])
    return history


def _save(module_state: dict[str, torch.Tensor], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: torch.save(module_state, f))


def _load_world_model(path: Path, stack: int, remedy: str) -> LatentWorldModel:
    model = _new_model("jepa", stack=stack)
    try:
        load_module_state(model, read_weights(path, "a world model", remedy), path, remedy)
    except (CheckpointError, FileNotFoundError) as error:
        raise SystemExit(f"physical_reasoning: {error} ({remedy})") from error
    return model.eval()


def projection_layout(projections: dict[str, torch.Tensor]) -> tuple[int, int]:
    """``(hidden_layers, output width)`` of the ``visual_to_llm`` that saved ``projections``; ValueError when
    there is none."""
    linear = sorted(int(k.split(".")[1]) for k in projections
                    if k.startswith("visual_to_llm.") and k.endswith(".weight"))
    if not linear:
        raise ValueError("these tensors hold no visual_to_llm projection: load a file that a physical_reasoning "
                         "run saved under models/")
    return len(linear) - 1, int(projections[f"visual_to_llm.{linear[-1]}.weight"].shape[0])


def load_reasoner(out: Path, task: str = "tower") -> MultimodalWorldModelLLM:
    """The world model and trained projections that a run saved under ``out/models`` for ``task`` (``tower``
    or ``ball``), over SmolLM2."""
    models = out / "models"
    world_path, projection_path = ((models / "tower_world_model.pt", models / "projections.pt") if task == "tower"
                                   else (models / "ball_world_model.pt", models / "ball_projections.pt"))
    remedy = (f"run python -m benchmarks.physical_reasoning --out DIR --tasks {task} first (without "
              "--skip-language)")
    world = _load_world_model(world_path, 1 if task == "tower" else STACK, remedy)
    try:
        projections = read_weights(projection_path, "the multimodal projections", remedy)
        layers, width = projection_layout(projections)
    except (CheckpointError, FileNotFoundError, ValueError) as error:
        raise SystemExit(f"physical_reasoning: {projection_path}: {error} ({remedy})") from error
    record = _earlier_tasks(out / "results.json").get(task, {})  # how the run built the model
    first, bf16 = bool(record.get("mm_question_first", False)), bool(record.get("mm_bf16", False))
    head = projections.get("visual_to_outcome.weight")
    outcome_dim = 0 if head is None else int(head.shape[0])  # the outcome head, when the run trained one
    backbone, tokenizer = load_smollm2()
    built: dict[str, Any] = {"question_first": first, "outcome_dim": outcome_dim, "bf16": bf16, "hidden_layers": layers}
    if task == "tower":
        model = MultimodalWorldModelLLM(world, backbone, tokenizer, **built,
                                        imagine_steps=record.get("mm_imagine_steps", _IMAGINE_STEPS))
    else:  # the tokens per frame follow from the saved projection's width
        per_frame = width // (SEEN * int(backbone.get_input_embeddings().weight.shape[1]))  # type: ignore[operator]
        model = MultimodalWorldModelLLM(world, backbone, tokenizer, tokens_per_frame=max(per_frame, 1),
                                        joint_frames=SEEN, **built)
    try:
        model.load_projection_state(projections)
    except ValueError as error:
        raise SystemExit(f"physical_reasoning: {projection_path}: {error}") from error
    return model.eval()


def _ask(out: Path, seed: int, question: str | None, task: str) -> int:
    """Show one scene (a BlockTower or a BallCatch throw reset with ``seed``) to the saved reasoner and print
    its answer."""
    if task == "tower":
        frame, info = BlockTowerEnv().reset(seed=seed)
        asked = question or QUESTION
        answer = load_reasoner(out, task).ask(torch.from_numpy(frame)[None], asked)
        print(f"{info['tower'].describe()}\nQ: {asked}\nA: {answer}\n(simulated: it "
              f"{'falls' if info['fell'] else 'stands'})")
        return 0
    throw = ball_questions(1, seed)
    asked = question or BALL_QUESTION
    answer = load_reasoner(out, task).ask(torch.from_numpy(throw.seen_frames()[0]), asked)
    print(f"{throw.describe(0)}\nQ: {asked}\nA: {answer}\n(simulated: it lands at x = "
          f"{throw.throws.landing_x[0]:.2f} m, bin {throw.answers[0]})")
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--tasks", nargs="+", choices=["tower", "ball"], default=["tower", "ball"],
                   help="question sets to run; the other tasks' records in <out>/results.json are kept")
    p.add_argument("--train-pairs", type=int, default=500, help="tower: matched pairs to train on (2x towers)")
    p.add_argument("--test-pairs", type=int, default=250, help="tower: matched pairs held out (2x towers)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-seed", type=int, default=38, help="tower: the held-out set's seed")
    p.add_argument("--updates", type=int, default=600, help="tower: world-model updates")
    p.add_argument("--ball-train-throws", type=int, default=2000)
    p.add_argument("--ball-test-throws", type=int, default=1000)
    p.add_argument("--ball-test-seed", type=int, default=1_000_000, help="ball: reset seed of the first held-out throw")
    p.add_argument("--ball-updates", type=int, default=1000, help="ball: world-model updates")
    p.add_argument("--ball-probe-steps", type=int, default=4000, help="ball: Adam steps of the landing probe")
    p.add_argument("--ball-position-steps", type=int, default=6000,
                   help="ball: Adam steps of the imagination's ball-position read-out")
    p.add_argument("--ball-tokens", type=int, default=1, help="ball: language-model vectors per seen frame")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--probe-steps", type=int, default=3000, help="tower: Adam steps of the probes")
    p.add_argument("--mm-steps", type=int, default=200, help="multimodal projection updates")
    p.add_argument("--mm-batch", type=int, default=16)
    p.add_argument("--skip-language", action="store_true", help="no language model (world-model methods only)")
    p.add_argument("--mm-imagine-steps", type=int, default=_IMAGINE_STEPS,
                   help="tower: world-model steps imagined for the multimodal model's extra latent (0: frames only)")
    p.add_argument("--skip-language-alone", action="store_true", help="no 'language model alone' column")
    p.add_argument("--language-alone-from", type=Path, metavar="RESULTS_JSON", default=None,
                   help="take the 'language model alone' rows from an earlier run's results.json on the same test "
                        "set (checked by its SHA-256) instead of measuring them again")
    p.add_argument("--mm-lr", type=float, default=2e-3, help="Adam learning rate of the projections")
    p.add_argument("--mm-outcome-weight", type=float, default=0.0,
                   help="weight of the outcome head's loss (the tower's fall, the ball's landing x) read from the "
                        "projection's hidden layer beside the answer (0: no outcome head)")
    p.add_argument("--mm-seed", type=int, default=None,
                   help="seed of the multimodal model's initialisation and batches (default: --seed, and the "
                        "initialisation from the run's random state), to train it again over the same data")
    p.add_argument("--mm-hidden-layers", type=int, default=1, help="hidden layers of the visual projection")
    p.add_argument("--mm-outcome-pretrain", type=int, default=0, metavar="STEPS",
                   help="two stages: first fit the projection's hidden layers (and the outcome head) to the outcome "
                        "and the answer classes for this many steps without the language model, then train only "
                        "the layer that makes its vectors on the answers (needs --mm-outcome-weight > 0; 0: one "
                        "stage)")
    p.add_argument("--mm-visual-noise", type=float, default=0.0,
                   help="training-time Gaussian noise on the projected vectors, in token-embedding standard deviations")
    p.add_argument("--mm-bf16", action="store_true",
                   help="run the language model under bfloat16 autocast (about 2x faster training on a CPU with "
                        "AVX512-BF16; projections and losses stay float32)")
    p.add_argument("--mm-question-first", action="store_true",
                   help="multimodal prompts ask before they show the scene, so the tokens before the visual block "
                        "are computed once and cached (faster); by default the question follows the scene")
    p.add_argument("--reuse-world-model", action="store_true",
                   help="load <out>/models/<task>_world_model.pt (an earlier run's) instead of training one")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--ask", type=int, metavar="SEED", default=None,
                   help="no benchmark: show the scene of this reset seed (of the first --tasks) to the model saved "
                        "under --out and print its answer to --question")
    p.add_argument("--question", default=None, help="with --ask: the question (default: the benchmark's)")
    p.add_argument("--merge", type=Path, nargs="+", metavar="RESULTS_JSON", default=None,
                   help="no benchmark: gather the task records of these results.json files (a later file's record "
                        "of a task replaces an earlier one's) into <out>/results.json and report.md")
    args = p.parse_args(argv)
    sizes = (args.train_pairs, args.test_pairs, args.updates, args.ball_train_throws, args.ball_test_throws,
             args.ball_updates, args.threads)
    if min(sizes) < 1 or args.seed == args.test_seed:
        p.error("--train-pairs, --test-pairs, --updates, --ball-* sizes and --threads must be >= 1, and --seed must "
                "differ from --test-seed")
    if args.mm_hidden_layers < 1 or args.mm_outcome_pretrain < 0:
        p.error(f"--mm-hidden-layers must be >= 1 and --mm-outcome-pretrain >= 0, got {args.mm_hidden_layers} and "
                f"{args.mm_outcome_pretrain}")
    if args.mm_outcome_pretrain and args.mm_outcome_weight <= 0:
        p.error("--mm-outcome-pretrain trains the outcome head: give it --mm-outcome-weight > 0 as well")
    first, count = args.ball_test_seed, args.ball_test_throws
    if first < args.seed + args.ball_train_throws and args.seed < first + count:
        p.error(f"the held-out throws (seeds {args.ball_test_seed}..) overlap the training throws (seeds {args.seed}.."
                f"{args.seed + args.ball_train_throws - 1}); pick another --ball-test-seed")
    return args


class _Language:
    """SmolLM2 and its tokenizer, loaded once, on first use."""

    def __init__(self) -> None:
        self.loaded: tuple[torch.nn.Module, Any] | None = None

    def get(self, cost: _Cost) -> tuple[torch.nn.Module, Any]:
        """The model and tokenizer; the load, when this call does it, recorded in ``cost`` (the running task's)."""
        if self.loaded is None:
            started = time.time()
            self.loaded = load_smollm2()
            cost.record("load SmolLM2-135M (GGUF -> float32)", started)
        return self.loaded


def _tower(args: argparse.Namespace, cost: _Cost, language: _Language) -> dict[str, Any]:
    started = time.time()
    test = tower_pairs(args.test_pairs, args.test_seed, frames=_FRAMES)
    digest = _check_frozen(test.digest(), FROZEN_TEST_SETS, args.test_pairs, args.test_seed, "pairs")
    train = tower_pairs(args.train_pairs, args.seed, frames=_FRAMES)
    cost.record("question sets (simulate + draw)", started)
    started = time.time()
    world_path = args.out / "models" / "tower_world_model.pt"
    history: list[dict[str, float]] = []
    if args.reuse_world_model:
        model = _load_world_model(world_path, 1, "train it again without --reuse-world-model")
        history = _earlier_world_model(args.out, "tower", cost)
    else:
        model, history = train_model(tower_throws(train), "jepa", args.updates, args.batch_size, _IMAGINE_STEPS,
                                     args.seed, log_every=50, stack=1)
        _save(model.state_dict(), world_path)
        cost.record("world model (JEPA)", started)
    model.eval()
    majority = bool(train.fell.mean() >= 0.5)
    methods: dict[str, Any] = {"chance / majority class": _score(test.fell == majority)}
    started = time.time()
    methods.update(_world_model_methods(model, train, test, args.seed, args.probe_steps))
    cost.record("world-model probes", started)
    tower: dict[str, Any] = {"test_towers": len(test.towers), "train_towers": len(train.towers),
                             "test_seed": args.test_seed, "test_sha256": digest, "methods": methods,
                             "world_model_history": history}
    if args.skip_language:
        return tower
    backbone, tokenizer = language.get(cost)
    if args.language_alone_from is not None:
        methods.update(_language_rows_from(args.language_alone_from, "tower", digest, cost))
    elif not args.skip_language_alone:
        methods.update(_language_rows(backbone, tokenizer, [t.describe() for t in test.towers], QUESTION, test.fell,
                                      "tower", ["yes", "no"], cost))
    head = args.mm_outcome_weight > 0
    if args.mm_seed is not None:  # the projections' initialisation (else whatever the run drew before)
        torch.manual_seed(args.mm_seed)
    mm = MultimodalWorldModelLLM(model, backbone, tokenizer, imagine_steps=args.mm_imagine_steps,
                                 question_first=args.mm_question_first, outcome_dim=int(head), bf16=args.mm_bf16,
                                 visual_noise=args.mm_visual_noise, hidden_layers=args.mm_hidden_layers)
    started = time.time()
    lesson = tower_lesson(train, head)
    tower.update(mm_outcome_weight=args.mm_outcome_weight, mm_bf16=args.mm_bf16,
                 mm_visual_noise=args.mm_visual_noise, **_two_stages(args, mm, lesson, standardise=False))
    tower["multimodal_history"] = train_multimodal(mm, lesson, args.mm_steps, args.mm_batch, _mm_seed(args),
                                                   lr=args.mm_lr, outcome_weight=args.mm_outcome_weight,
                                                   trunk=not args.mm_outcome_pretrain)
    _save(mm.projection_state(), args.out / "models" / "projections.pt")
    cost.record("multimodal projections", started)
    started = time.time()
    name = "multimodal: SmolLM2-135M + world-model tokens" + ("" if args.mm_imagine_steps else
                                                              " (initial frame only, no imagined latent)")
    methods[name] = _answers_scored(answer_multimodal(mm, test.frames[:, :1], QUESTION), test.fell, "tower")
    tower.update(mm_imagine_steps=args.mm_imagine_steps, mm_question_first=args.mm_question_first)
    cost.record("multimodal: answer the test set", started)
    return tower


def _ball(args: argparse.Namespace, cost: _Cost, language: _Language) -> dict[str, Any]:
    started = time.time()
    test = ball_questions(args.ball_test_throws, args.ball_test_seed)
    digest = _check_frozen(test.digest(), FROZEN_BALL_SETS, args.ball_test_throws, args.ball_test_seed, "throws")
    train = ball_questions(args.ball_train_throws, args.seed)
    cost.record("question sets (simulate + draw)", started)
    started = time.time()
    world_path = args.out / "models" / "ball_world_model.pt"
    history: list[dict[str, float]] = []
    if args.reuse_world_model:
        model = _load_world_model(world_path, STACK, "train it again without --reuse-world-model")
        history = _earlier_world_model(args.out, "ball", cost)
    else:
        model, history = train_model(train.throws, "jepa", args.ball_updates, args.batch_size, SEEN, args.seed,
                                     stack=STACK, save_to=world_path)
        cost.record("world model (JEPA)", started)
    model.eval()
    majority = int(np.bincount(train.answers).argmax())
    methods: dict[str, Any] = {"chance / majority class": _score(test.answers == majority)}
    started = time.time()
    probed = probed_landings(model, train, test, args.seed, args.ball_probe_steps)
    methods[f"world-model probe (latents of the {SEEN} frames seen)"] = _score(bins_of(probed) == test.answers)
    cost.record("world-model probe", started)
    started = time.time()
    imagined = imagined_landings(model, train, test, args.seed, args.ball_position_steps)
    methods["world-model imagination (landing read off the imagined flight)"] = _score(
        bins_of(imagined) == test.answers)
    cost.record("world-model imagination", started)
    ball: dict[str, Any] = {"test_throws": len(test), "train_throws": len(train), "test_seed": args.ball_test_seed,
                            "test_sha256": digest, "frames_seen": SEEN, "methods": methods,
                            "landing_error_m": {"probe": float(np.abs(probed - test.throws.landing_x).mean()),
                                                "imagination": float(np.abs(imagined - test.throws.landing_x).mean())},
                            "world_model_history": history}
    if args.skip_language:
        return ball
    backbone, tokenizer = language.get(cost)
    if args.language_alone_from is not None:
        methods.update(_language_rows_from(args.language_alone_from, "ball", digest, cost))
    elif not args.skip_language_alone:
        methods.update(_language_rows(backbone, tokenizer, [test.describe(i) for i in range(len(test))], BALL_QUESTION,
                                      test.answers, "ball", [str(b) for b in range(1, LANDINGS + 1)], cost))
    head = args.mm_outcome_weight > 0
    if args.mm_seed is not None:  # the projections' initialisation (else whatever the run drew before)
        torch.manual_seed(args.mm_seed)
    mm = MultimodalWorldModelLLM(model, backbone, tokenizer, tokens_per_frame=args.ball_tokens, joint_frames=SEEN,
                                 question_first=args.mm_question_first, outcome_dim=int(head), bf16=args.mm_bf16,
                                 visual_noise=args.mm_visual_noise, hidden_layers=args.mm_hidden_layers)
    started = time.time()
    lesson = ball_lesson(train, head)
    ball.update(mm_question_first=args.mm_question_first, mm_outcome_weight=args.mm_outcome_weight,
                mm_bf16=args.mm_bf16, mm_visual_noise=args.mm_visual_noise,
                **_two_stages(args, mm, lesson, standardise=True))
    ball["multimodal_history"] = train_multimodal(mm, lesson, args.mm_steps, args.mm_batch, _mm_seed(args),
                                                  lr=args.mm_lr, standardise=not args.mm_outcome_pretrain,
                                                  outcome_weight=args.mm_outcome_weight,
                                                  trunk=not args.mm_outcome_pretrain)
    _save(mm.projection_state(), args.out / "models" / "ball_projections.pt")
    cost.record("multimodal projections", started)
    started = time.time()
    answers = answer_multimodal(mm, test.seen_frames(), BALL_QUESTION)
    methods["multimodal: SmolLM2-135M + world-model tokens of the seen frames"] = _answers_scored(
        answers, test.answers, "ball")
    cost.record("multimodal: answer the test set", started)
    return ball


def _mm_seed(args: argparse.Namespace) -> int:
    """The multimodal model's training seed: ``--mm-seed``, else ``--seed``."""
    return int(args.seed if args.mm_seed is None else args.mm_seed)


def _two_stages(args: argparse.Namespace, mm: MultimodalWorldModelLLM, lesson: Lesson,
                standardise: bool) -> dict[str, Any]:
    """The first training stage when ``--mm-outcome-pretrain`` asks for one (:func:`pretrain_outcome`), and the
    record's entries for the projection's layout and that stage."""
    entries: dict[str, Any] = {"mm_hidden_layers": args.mm_hidden_layers,
                               "mm_outcome_pretrain": args.mm_outcome_pretrain, "mm_seed": args.mm_seed}
    if args.mm_outcome_pretrain:
        entries["outcome_pretraining_history"] = pretrain_outcome(mm, lesson, args.mm_outcome_pretrain,
                                                                  _mm_seed(args), standardise=standardise)
    return entries


def _write_text(path: Path, text: str) -> None:
    def write(handle: BinaryIO) -> None:
        handle.write(text.encode())

    atomic_write(path, write)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    torch.set_num_threads(args.threads)
    if args.ask is not None:
        return _ask(args.out, args.ask, args.question, args.tasks[0])
    if args.merge is not None:
        missing = [str(path) for path in args.merge if not path.is_file()]
        if missing:
            raise SystemExit(f"physical_reasoning: --merge found no results file at {', '.join(missing)}")
        merged: dict[str, Any] = {}
        for path in args.merge:
            merged.update(_earlier_tasks(path))
        return _write_results(args.out, merged)
    command = "python -m benchmarks.physical_reasoning " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    tasks = _earlier_tasks(args.out / "results.json")
    language = _Language()
    for task in args.tasks:
        cost = _Cost()
        record = (_tower if task == "tower" else _ball)(args, cost, language)
        record.update(command=command, threads=torch.get_num_threads(), cost=cost.parts)
        tasks[task] = record
    return _write_results(args.out, tasks)


def _write_results(out: Path, tasks: dict[str, Any]) -> int:
    results = {"tasks": tasks, "seed_figures_quoted": SEED_FIGURES}
    report = _markdown(results)
    _write_text(out / "results.json", json.dumps(results, indent=1))
    _write_text(out / "report.md", report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
