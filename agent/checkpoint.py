"""Checkpoints: plain tensors and builtins only, written atomically, loaded with weights_only;
and what the agent puts in one (:func:`agent_payload`) and takes back out (:func:`restore_agent`)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from agent.atomic import atomic_write
from agent.config import ConfigError, config_from_dict, config_to_dict
from agent.timing import PhaseClock
from world_models.base import WorldModel

if TYPE_CHECKING:
    from agent.agent import MBRLAgent

FORMAT = "rehearse-checkpoint/1"


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, corrupt or not a Rehearse checkpoint."""


KEEP_CHECKPOINTS = 2
"""How many checkpoints a run directory keeps: ``latest.pt`` and the ones before it (``latest.1.pt``, ...).

When the newest one is unreadable, a run resumes from the one before it (:func:`load_run_checkpoint`)."""


def older_checkpoint(path: str | Path, age: int) -> Path:
    """The checkpoint written ``age`` saves before ``path`` (``checkpoints/latest.pt`` -> ``latest.<age>.pt``)."""
    path = Path(path)
    return path if age == 0 else path.with_name(f"{path.stem}.{age}{path.suffix}")


def save_checkpoint(path: str | Path, payload: dict[str, Any], keep: int = KEEP_CHECKPOINTS) -> None:
    """Write ``payload`` to ``path`` atomically (a temp file in the same folder, fsync, rename), keeping
    the ``keep - 1`` checkpoints written before it as ``latest.1.pt``, ``latest.2.pt``, ... (see
    :func:`older_checkpoint`). The new file is complete on disk before any older one is moved."""
    path = Path(path)

    def write(handle: Any) -> None:
        torch.save({"format": FORMAT, **payload}, handle)
        handle.flush()
        os.fsync(handle.fileno())
        for age in range(keep - 1, 0, -1):  # the new one is written: shift the older ones by one
            if older_checkpoint(path, age - 1).exists():
                os.replace(older_checkpoint(path, age - 1), older_checkpoint(path, age))

    atomic_write(path, write)


def read_weights(path: Path, what: str, remedy: str) -> Any:
    """``torch.load`` onto the CPU that unpickles nothing but tensors and plain containers, or a
    CheckpointError naming the damaged file, what it should have been (``what``) and ``remedy``."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged files
        raise CheckpointError(
            f"{path} is not a readable {what} (truncated, corrupt or written by something else): "
            f"{type(exc).__name__}: {exc}\n{remedy}"
        ) from exc


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint safely (no arbitrary unpickling) and check it is ours."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    payload = read_weights(path, "checkpoint", "Nothing was changed; delete the file or point --run-dir "
                           "elsewhere to start fresh.")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a Rehearse checkpoint (expected format {FORMAT!r}); "
            "load it with the tool that wrote it, or start a fresh run."
        )
    return payload


def run_checkpoints(run_dir: str | Path) -> list[Path]:
    """The checkpoints of ``run_dir`` that exist, newest first (``latest.pt``, ``latest.1.pt``, ...)."""
    path = Path(run_dir) / CHECKPOINT_NAME
    found = [older_checkpoint(path, age) for age in range(KEEP_CHECKPOINTS + 8)]
    return [p for p in found if p.is_file()]


def load_run_checkpoint(run_dir: str | Path, set_aside: bool = False) -> tuple[dict[str, Any], Path] | None:
    """The newest readable checkpoint of ``run_dir`` and its path, or ``None`` when it has none.

    An unreadable newer one is reported on stderr and skipped (renamed ``<name>.unreadable-<time>`` when
    ``set_aside``, so that later checkpoints do not push the readable one out); a CheckpointError when
    none of them can be read.
    """
    candidates = run_checkpoints(run_dir)
    errors = []
    for path in candidates:
        try:
            payload = load_checkpoint(path)
        except CheckpointError as exc:
            errors.append(exc)
            continue
        for bad, error in zip(candidates[:len(errors)], errors, strict=True):
            kept = bad.with_name(f"{bad.name}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
            if set_aside:
                os.replace(bad, kept)
            cause = str(error).rsplit("\n", 1)[0]  # without the remedy: the fallback is the remedy
            aside = f"; the unreadable one is kept as {kept}" if set_aside else ""
            print(f"warning: {cause}\nUsing the previous checkpoint {path} (step "
                  f"{payload['counters']['num_timesteps']}) instead{aside}", file=sys.stderr, flush=True)
        return payload, path
    if errors:
        if len(errors) == 1:
            raise errors[0]
        raise CheckpointError("no checkpoint of this run can be read:\n" + "\n".join(map(str, errors)))
    return None


def checked_env_id(payload: dict[str, Any], named: str | None) -> str:
    """The environment to rebuild a checkpoint's agent on: ``named`` (the user's choice) when given, else the
    checkpoint's ``env_id``, unless that is an entry point (``module:Class``): a checkpoint never chooses code
    to import, so that needs the user to name it (a CheckpointError says how)."""
    saved = str(payload["config"].get("env_id", ""))
    if named is not None:
        return named
    if ":" in saved:
        raise CheckpointError(
            f"the checkpoint names the environment {saved!r}, which would import the module "
            f"{saved.rpartition(':')[0]!r}; a checkpoint does not choose code to import. If you trust it, "
            f"name it yourself: --env {saved} (or env=... in MBRLAgent.load)"
        )
    return saved


def load_module_state(
    module: torch.nn.Module | WorldModel, state: Mapping[str, Any], source: str | Path, remedy: str
) -> None:
    """``module.load_state_dict(state)``, or a CheckpointError saying that ``source`` holds other
    networks (missing, unexpected or mis-shaped tensors) and what to do (``remedy``)."""
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(
            f"the {type(module).__name__} in {source} does not match this version of Rehearse's networks "
            f"(it was saved by an older version, with other settings, or edited): {str(exc).splitlines()[0]} ...; "
            f"{remedy}"
        ) from exc


def numpy_to_tensors(state: dict[str, Any]) -> dict[str, Any]:
    """Replace numpy arrays by tensors (so ``weights_only`` loading accepts them)."""
    return {k: torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v for k, v in state.items()}


def tensors_to_numpy(state: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`numpy_to_tensors`."""
    return {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in state.items()}


# ----------------------------------------------------------------- the agent's payload
CHECKPOINT_NAME = "checkpoints/latest.pt"
"""Where a run directory keeps its checkpoint."""
RESUMABLE_CHANGES = {"train.total_timesteps", "device"}
"""Settings a run may change when it resumes; any other difference is refused."""


def flat_diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys (``section.field``) whose values differ between two nested config dicts."""
    keys = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict) and key != "env_kwargs":
            keys += flat_diff(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys


def agent_payload(agent: MBRLAgent) -> dict[str, Any]:
    """Everything needed to resume ``agent``: config, loop counters, model, optimizer, buffer, generators, the
    cost limit's multiplier."""
    env_rng = getattr(agent.env.unwrapped, "np_random", None)
    return {
        "config": config_to_dict(agent.config),
        "counters": {
            "num_timesteps": agent.num_timesteps, "episode": agent._episode, "trained": agent._trained,
            "next_checkpoint": agent._next_checkpoint, "last_fit": agent._last_fit,
            "evals_done": agent._evals_done, "mid_episode": agent._obs is not None,
            "ep_returns": list(agent._ep_returns),
            "elapsed": agent._elapsed(), "eval_seconds": agent._eval_seconds, "phase_seconds": agent.clock.snapshot(),
            "ep_return": agent._ep_return, "ep_length": agent._ep_length, "ep_cost": agent._ep_cost,
            "pending_step": getattr(agent, "_pending_step", None),
            "cumulative_cost": agent._cumulative_cost, "vacuous_checked": agent._vacuous_checked,
            "monitor_rows": agent.logger.episodes if agent.logger is not None else None,
        },
        "model": agent.model.state_dict(),
        "optimizer": agent.model.optimizer.state_dict(),
        "buffer": numpy_to_tensors(agent.buffer.state_dict()),
        "rng": agent.rng.bit_generator.state,
        "planner_rng": agent._generator.get_state(),
        "env_rng": env_rng.bit_generator.state if env_rng is not None else None,
        "cost_multiplier": agent.cost_multiplier.state_dict() if agent.cost_multiplier is not None else None,
        "veto": agent.veto.state_dict(),
    }


def restore_agent(agent: MBRLAgent, payload: dict[str, Any], source: Path) -> None:
    """Put ``agent`` in the state :func:`agent_payload` saved in ``payload`` (read from ``source``).

    A ConfigError when the checkpoint's configuration differs from the agent's beyond
    :data:`RESUMABLE_CHANGES`."""
    saved = config_to_dict(config_from_dict(payload["config"]))  # fills fields added since, maps renamed keys
    changed = [k for k in flat_diff(saved, config_to_dict(agent.config)) if k not in RESUMABLE_CHANGES]
    if changed:
        raise ConfigError(
            f"the checkpoint {source} was made with a different configuration ({', '.join(changed)}); "
            "use the same settings to resume, or a new --run-dir to start a fresh run"
        )
    load_module_state(agent.model, payload["model"], source, "start a fresh run with a new --run-dir")
    c = payload["counters"]
    agent.num_timesteps, agent._episode, agent._trained = c["num_timesteps"], c["episode"], c["trained"]
    agent._next_checkpoint, agent._last_fit, agent._evals_done = c["next_checkpoint"], c["last_fit"], c["evals_done"]
    agent._ep_returns.extend(c["ep_returns"])
    agent._elapsed_before, agent._eval_seconds = c.get("elapsed", 0.0), c.get("eval_seconds", 0.0)
    agent.clock = PhaseClock(c.get("phase_seconds"))
    agent.model.optimizer.load_state_dict(payload["optimizer"])
    buffer_state = tensors_to_numpy(payload["buffer"])
    agent.buffer = agent._make_buffer(int(buffer_state["capacity"]))
    agent.buffer.load_state_dict(buffer_state)
    if c.get("mid_episode", False):  # written mid-episode (a stop): that episode ends here, a new one starts
        agent.buffer.truncate_last()
        agent._episode += 1
    else:  # an episode whose end (monitor row) an abandoned evaluation left pending
        agent._ep_return, agent._ep_length, agent._ep_cost = c.get("ep_return", 0.0), c.get("ep_length", 0), \
            c.get("ep_cost", 0.0)
    agent._pending_step = c.get("pending_step")
    agent._cumulative_cost = c.get("cumulative_cost", 0.0)
    agent._vacuous_checked = c.get("vacuous_checked", False)
    if agent.cost_multiplier is not None and payload.get("cost_multiplier") is not None:
        agent.cost_multiplier.load_state_dict(payload["cost_multiplier"])
    agent.veto.load_state_dict(payload.get("veto", {}))
    agent._saved_at = agent.num_timesteps if agent._pending_step is None else None  # no second copy of it
    agent._resumed_rows = c.get("monitor_rows")
    agent.rng.bit_generator.state = payload["rng"]
    agent._generator.set_state(payload["planner_rng"])
    if payload["env_rng"] is not None:
        agent.env.unwrapped.np_random = np.random.Generator(np.random.PCG64())
        agent.env.unwrapped.np_random.bit_generator.state = payload["env_rng"]
    if agent.run_dir is not None:
        agent._resumed_at = agent.num_timesteps
