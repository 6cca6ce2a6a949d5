"""Where will the ball land? The BallCatch question set of :mod:`benchmarks.physical_reasoning`.

A question is a BallCatch throw (:func:`benchmarks.ball_probe.collect`: 64x64 pixels, random basket moves) seen
for its first :data:`SEEN` frames (0.45 s of a 1 to 2 s flight); the answer is where the ball lands, as one of
four equal bins of the 10 m floor, numbered 1 to 4 from left to right (chance 25%). Throws are reproducible
from their seed; the frozen test set's SHA-256 (:meth:`BallQuestions.digest`) guards it against silent change.

Answered here by a world model that sees each frame with the one before it (two stacked frames, so velocity is
visible), trained by :func:`benchmarks.ball_probe.train_model`:

- probe (:func:`fit_landing_probe`): an MLP from the latents of the seen frames, concatenated, to the landing x,
  fitted on the training throws; its bin is the answer.
- imagination (:func:`imagined_landings`): :mod:`benchmarks.ball_probe`'s read-out: the latest latent rolled
  forward under the basket's actions, the ball's position read off every imagined latent, the landing taken
  at the first imagined floor crossing.

The language model alone reads :meth:`BallQuestions.describe` (the ball's true positions in the seen frames).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import torch

from benchmarks.ball_probe import Probe, Throws, _encode, collect, fit_probe, imagine_landing, stack_frames
from envs.ball_catch import DT, FLOOR_WIDTH, LANDINGS, landing_bin
from world_models.latent import LatentWorldModel

__all__ = ["QUESTION", "SEEN", "STACK", "BallQuestions", "ball_questions", "bins_of", "fit_landing_probe",
           "imagined_landings", "probed_landings", "seen_latents"]

SEEN = 10
"""Frames of each throw shown (the initial one and the next nine, 0.05 s apart)."""
STACK = 2
"""RGB frames the world model's encoder sees at once (each frame with the one before it)."""
QUESTION = (f"Where will the ball land? The floor is {FLOOR_WIDTH:.0f} m wide, split into {LANDINGS} equal bins "
            f"numbered 1 to {LANDINGS} from left to right. Answer with the bin number.")


@dataclass
class BallQuestions:
    """Throws asked about: ``throws`` (whole episodes, for training a world model) and the reset seed of the first."""

    throws: Throws
    seed: int
    _seen: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.throws.frames)

    @property
    def answers(self) -> np.ndarray:
        """``(M,)`` int: the landing bin of each throw, 1 to :data:`LANDINGS` from the left."""
        return np.asarray(self.throws.landing_bin, dtype=int) + 1

    def seen_frames(self) -> np.ndarray:
        """``(M, SEEN, 64, 64, 3 * STACK)`` uint8: each seen frame with the one before it (the first repeated);
        built on the first call and kept (the probe, the multimodal model and its answers all read it)."""
        if self._seen is None:
            self._seen = np.stack([stack_frames(f[:SEEN], STACK) for f in self.throws.frames])
        return self._seen

    def next_frames(self) -> np.ndarray:
        """``(M, 64, 64, 3 * STACK)`` uint8: the first frame after the seen ones, stacked the same way."""
        return np.stack([stack_frames(f[:SEEN + 1], STACK)[-1] for f in self.throws.frames])

    def describe(self, i: int) -> str:
        """Throw ``i`` in words, for a language model: the floor, then the ball's position in each seen frame."""
        track = ", ".join(f"({x:.2f}, {y:.2f})" for x, y in self.throws.ball[i][:SEEN])
        return (f"A ball is thrown in a vertical plane above a floor {FLOOR_WIDTH:.0f} m wide (x runs from 0 m at "
                f"the left to {FLOOR_WIDTH:.0f} m at the right; the floor is at height y = 0). Its position "
                f"(x, y) in metres, every {DT:.2f} s: {track}.")

    def digest(self) -> str:
        """SHA-256 of the seen frames, the true track and the landings: a silent change of the data changes it."""
        sha = hashlib.sha256()
        for frames, ball in zip(self.throws.frames, self.throws.ball, strict=True):
            sha.update(np.ascontiguousarray(frames[:SEEN]).tobytes())
            sha.update(np.asarray(ball[:SEEN], np.float64).round(9).tobytes())
        sha.update(np.asarray(self.throws.landing_bin, np.int64).tobytes())
        sha.update(np.asarray(self.throws.landing_x, np.float64).round(9).tobytes())
        return sha.hexdigest()


def ball_questions(throws: int, seed: int) -> BallQuestions:
    """``throws`` throws reset with seeds ``seed, seed + 1, ...``."""
    return BallQuestions(collect(throws, seed), seed)


def bins_of(landing_x: np.ndarray) -> np.ndarray:
    """``(M,)`` landing x (m) -> ``(M,)`` bins 1 to :data:`LANDINGS` (x clipped to the floor first)."""
    return np.array([landing_bin(float(np.clip(x, 0.0, FLOOR_WIDTH))) + 1 for x in landing_x])


def seen_latents(model: LatentWorldModel, questions: BallQuestions) -> np.ndarray:
    """``(M, SEEN, Z)`` float64: the world model's encoding of every seen frame."""
    frames = questions.seen_frames()
    z = _encode(model, frames.reshape(-1, *frames.shape[2:]))  # (M SEEN, Z)
    return z.numpy().astype(np.float64).reshape(*frames.shape[:2], -1)


def fit_landing_probe(latents: np.ndarray, landing_x: np.ndarray, seed: int, steps: int = 4000) -> Probe:
    """An MLP ``(M, F * Z) -> (M, 1)`` landing x (m) from seen latents ``(M, F, Z)``, on standardised inputs
    and target (mean squared error, AdamW with a cosine schedule)."""
    x = latents.reshape(len(latents), -1)
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-8
    centre, scale = float(landing_x.mean()), float(landing_x.std())
    features = torch.as_tensor((x - mean) / std, dtype=torch.float32)
    target = torch.as_tensor((landing_x - centre) / scale, dtype=torch.float32)[:, None]
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 256), torch.nn.SiLU(), torch.nn.Linear(256, 256),
                              torch.nn.SiLU(), torch.nn.Linear(256, 1))
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        rows = torch.randint(0, len(features), (128,), generator=generator)
        loss = (net(features[rows]) - target[rows]).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    with torch.no_grad():  # fold the target's scale into the last layer: the probe returns metres
        last = net[-1]
        assert isinstance(last, torch.nn.Linear)
        last.weight.mul_(scale)
        last.bias.mul_(scale).add_(centre)
    return Probe(mean, std, net=net.eval())


def probed_landings(model: LatentWorldModel, train: BallQuestions, test: BallQuestions, seed: int,
                    probe_steps: int = 4000) -> np.ndarray:
    """``(M,)`` landing x (m) of each test throw read by :func:`fit_landing_probe` (fitted on the training
    throws) from its seen frames' latents."""
    probe = fit_landing_probe(seen_latents(model, train), train.throws.landing_x, seed, probe_steps)
    seen = seen_latents(model, test)
    return np.asarray(probe(seen.reshape(len(seen), -1))[:, 0])


def imagined_landings(model: LatentWorldModel, train: BallQuestions, test: BallQuestions, seed: int,
                      probe_steps: int = 6000, horizon: int = 60) -> np.ndarray:
    """``(M,)`` landing x of each test throw imagined from its last seen frame (see the module docstring); the
    position read-out is fitted on the training throws' real and imagined latents."""
    positions = fit_probe(model, train.throws, steps=probe_steps, seed=seed)
    return np.array([imagine_landing(model, positions, frames, actions, SEEN, horizon)[0]
                     for frames, actions in zip(test.throws.frames, test.throws.actions, strict=True)])
