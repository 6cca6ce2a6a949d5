"""Fault injection: tiny real runs killed, stopped and starved at chosen moments, then resumed with the same
command; their logs must equal an uninterrupted run's, row for row, and no earlier checkpoint may be lost.

Every failure a user can cause or meet ends in one ``error:`` line (exit status 2: bad input; 1: the
environment or the operating system). The kills are real SIGKILLs of a child process (:mod:`tests.fault_runner`)
or, in process, an exception no code catches (:class:`Killed`: nothing after it runs but ``finally`` blocks,
which only close files). The long randomized version is marked ``slow``.
"""

from __future__ import annotations

import csv
import errno
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import agent.checkpoint
import agent.evaluation
import train_agent
from agent.agent import MBRLAgent
from agent.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint, run_checkpoints
from agent.config import resolve_config
from agent.logger import RunLogger, truncate_outputs

ROOT = Path(__file__).parents[1]
STEPS = 160
ENV = ["--env", "rehearse/PointMass-v0", "--env-kwargs", "max_episode_steps=20"]
TINY = ["--preset", "debug", "--no-progress-bar", "--device", "cpu", "--train-learning-starts", "100",
        "--train-eval-freq", "40", "--train-checkpoint-freq", "40", "--train-log-interval", "20"]
"""20-step episodes; evaluations (one 20-step episode) at steps 40, 80, 120, 160, each at an episode end;
checkpoints at the first episode end after every 40 steps; planning from step 100 on."""
TIME_KEYS = ("wall_seconds", "eval_seconds")


class Killed(BaseException):
    """A simulated kill: no ``except Exception`` catches it, so nothing after it runs but ``finally`` blocks."""


def cli(run_dir: Path, steps: int = STEPS, *extra: str) -> list[str]:
    """train_agent.py's arguments for the tiny run."""
    return [*ENV, *TINY, "--total-timesteps", str(steps), "--run-dir", str(run_dir), *extra]


def make_agent(run_dir: Path, steps: int = STEPS) -> MBRLAgent:
    """The agent ``train_agent.py cli(run_dir, steps)`` builds (resuming ``run_dir``'s checkpoint if any)."""
    args = train_agent.build_parser().parse_args(cli(run_dir, steps))
    config = resolve_config(args.env, train_agent.overrides_from_args(args), preset=args.preset)
    return MBRLAgent(args.env, config, run_dir=run_dir)


def learn(run_dir: Path, steps: int = STEPS, stop_at: int | None = None, kill_at: int | None = None) -> MBRLAgent:
    """Train ``run_dir`` towards ``steps``; a callback stop after step ``stop_at``, a kill after step ``kill_at``."""

    def callback(a: MBRLAgent) -> bool:
        if a.num_timesteps == kill_at:
            raise Killed(f"killed after step {kill_at}")
        return a.num_timesteps != stop_at

    return make_agent(run_dir, steps).learn(steps, progress_bar=False, callback=callback)


def logs(run_dir: Path) -> dict[str, Any]:
    """monitor.csv without ``t``, progress.csv without wall-clock columns, evaluations.npz without time arrays."""
    lines = (run_dir / "monitor.csv").read_text().splitlines()
    with (run_dir / "progress.csv").open(newline="") as handle:
        rows = [{k: v for k, v in row.items() if not is_time_key(k)} for row in csv.DictReader(handle)]
    with np.load(run_dir / "evaluations.npz") as data:
        evaluations = {k: data[k].tolist() for k in data.files if k not in TIME_KEYS}
    return {"monitor": [line.rsplit(",", 1)[0] for line in lines[1:]], "progress": rows, "evaluations": evaluations,
            "tensorboard": tensorboard_scalars(run_dir / "tb")}


def tensorboard_scalars(tb: Path) -> dict[str, list[tuple[int, float]]]:
    """TensorBoard's scalars as TensorBoard shows them (what a resume purged left out), wall-clock tags left out."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tb), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
            if not is_time_key(tag)}


def is_time_key(key: str) -> bool:
    """progress.csv columns that measure wall-clock (they differ between any two runs)."""
    return (key.startswith("time/") and key != "time/total_timesteps") or key.endswith("plan_ms")


def checkpoint_steps(run_dir: Path) -> list[int]:
    """The steps of ``run_dir``'s checkpoints, newest first."""
    return [load_checkpoint(p)["counters"]["num_timesteps"] for p in run_checkpoints(run_dir)]


def main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = train_agent.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An uninterrupted tiny run, written under umask 022."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    umask = os.umask(0o022)
    try:
        assert train_agent.main(cli(run_dir)) == 0
    finally:
        os.umask(umask)
    yield run_dir


def on_evaluation_step(monkeypatch: pytest.MonkeyPatch, call: int, action: Callable[[], None]) -> list[int]:
    """Run ``action`` at the ``call``-th action training's evaluations plan; returns the call counter."""
    run = agent.evaluation.Evaluator.run
    calls = [0]

    def patched(self: agent.evaluation.Evaluator, plan: Any, *args: Any) -> Any:
        def counted(obs: np.ndarray, warm: Any, spent: np.ndarray) -> np.ndarray:
            calls[0] += 1
            if calls[0] == call:
                action()
            return plan(obs, warm, spent)

        return run(self, counted, *args)

    monkeypatch.setattr(agent.evaluation.Evaluator, "run", patched)
    return calls


# ----------------------------------------------------------------- 1. logs after stops, kills and torn lines
def test_stops_then_a_kill_keep_each_monitor_row_once(tmp_path: Path, reference: Path) -> None:
    """Issue 41, 1: two mid-episode stops (callback) put the episodes' summed lengths 30 steps behind the step
    count; a kill after it then left rows logged after the checkpoint in monitor.csv, logged a second time by
    the resumed run. The cut-back keeps the checkpoint's count of rows."""
    expected, run = tmp_path / "expected", tmp_path / "run"
    for run_dir in (expected, run):
        learn(run_dir, stop_at=35)
        learn(run_dir, stop_at=50)
    learn(expected)
    with pytest.raises(Killed):
        learn(run, kill_at=124)
    learn(run)
    assert logs(run) == logs(expected)
    lengths = [int(line.split(",")[1]) for line in (run / "monitor.csv").read_text().splitlines()[2:]]
    assert sum(lengths) == STEPS - 15 - 15 - 10  # two cut episodes and the one under way at the end


def test_torn_last_lines_are_dropped_not_fatal(tmp_path: Path) -> None:
    """Issue 41, 1: a write cut short (full disk, kill) leaves a last line without its newline; the cut-back of a
    resume and the next progress row drop it and keep every complete row."""
    monitor, progress = tmp_path / "monitor.csv", tmp_path / "progress.csv"
    monitor.write_text('#{"t_start": 0, "env_id": "x"}\nr,l,t\n-1.5,20,0.1\n-2.5,20,0.2\n-3')
    progress.write_text("time/total_timesteps,a\n20.0,1.0\n40.0,2.0\n60.0,3")
    truncate_outputs(tmp_path, 40)  # a checkpoint without a count of rows: the summed lengths
    assert monitor.read_text().splitlines()[2:] == ["-1.5,20,0.1", "-2.5,20,0.2"]
    assert progress.read_text().splitlines() == ["time/total_timesteps,a", "20.0,1.0", "40.0,2.0"]
    progress.write_text(progress.read_text() + "60.0,3")  # torn again, then a row is appended
    logger = RunLogger(tmp_path, "x")
    logger.dump(60)
    logger.close()
    rows = list(csv.DictReader(progress.open(newline="")))
    assert [r["time/total_timesteps"] for r in rows] == ["20.0", "40.0", "60.0"] and rows[-1]["a"] == ""


def test_monitor_time_continues_across_resumes(tmp_path: Path) -> None:
    """Issue 41, 5: monitor.csv's ``t`` counts the run's wall-clock, earlier sessions included."""
    logger = RunLogger(tmp_path, "x", elapsed_before=1000.0)
    logger.episode(-1.0, 20, 0.0)
    logger.close()
    assert float((tmp_path / "monitor.csv").read_text().splitlines()[2].split(",")[2]) >= 1000.0
    run = tmp_path / "run"
    learn(run, steps=40)
    elapsed = load_checkpoint(run / CHECKPOINT_NAME)["counters"]["elapsed"]
    learn(run, steps=60)
    later = [float(line.split(",")[2]) for line in (run / "monitor.csv").read_text().splitlines()[4:]]
    assert later and all(t >= elapsed > 0 for t in later)


# ----------------------------------------------------------------- 2. stopping within seconds
def test_sigterm_during_an_evaluation_abandons_it_and_the_resume_replays_it(
    tmp_path: Path, reference: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 41, 2: SIGTERM in the middle of the evaluation at step 80 stops after the action under way (not
    after the evaluation), with a checkpoint; the resumed run plays that evaluation again, so its logs equal
    an uninterrupted run's."""
    run = tmp_path / "run"
    calls = on_evaluation_step(monkeypatch, 25, lambda: os.kill(os.getpid(), signal.SIGTERM))  # step 80's 5th
    stopped = learn(run)
    assert stopped.stopped_by == signal.SIGTERM and stopped.num_timesteps == 80
    assert calls[0] == 25  # not one more action planned after the signal
    assert load_checkpoint(run / CHECKPOINT_NAME)["counters"]["pending_step"] is True
    with np.load(run / "evaluations.npz") as data:
        assert data["timesteps"].tolist() == [40]
    monkeypatch.undo()
    learn(run)
    assert logs(run) == logs(reference)


def test_a_second_signal_stops_at_once_in_one_error_line(
    tmp_path: Path, reference: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 41, 3: SIGTERM then SIGINT stops at once with one ``error:`` line, no KeyboardInterrupt traceback;
    the same command then continues from the last checkpoint to the uninterrupted run's logs."""
    run = tmp_path / "run"

    def two_signals() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)

    on_evaluation_step(monkeypatch, 25, two_signals)
    code, _, err = main(capsys, *cli(run))
    assert code == 128 + signal.SIGINT
    assert "Traceback" not in err and err.count("error:") == 1
    assert "second SIGINT: stopped at once" in err and "run the same command to continue" in err
    assert checkpoint_steps(run) == [40]
    monkeypatch.undo()
    assert main(capsys, *cli(run))[0] == 0
    assert logs(run) == logs(reference)


def test_a_run_killed_before_its_first_checkpoint_restarts_with_the_same_command(
    tmp_path: Path, reference: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 41, 2: the partial logs of a run killed before its first checkpoint are moved aside, with a note,
    and the same command starts the run again."""
    run = tmp_path / "run"
    on_evaluation_step(monkeypatch, 5, lambda: (_ for _ in ()).throw(Killed("killed in the evaluation at 40")))
    with pytest.raises(Killed):
        main(capsys, *cli(run))
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert Path("progress.csv") in before and not run_checkpoints(run)
    monkeypatch.undo()
    code, _, err = main(capsys, *cli(run))
    assert code == 0 and "ended before its first checkpoint" in err and "were moved to" in err
    (aside,) = run.glob("aborted-*")
    assert {Path(*p.relative_to(aside).parts): p.read_bytes() for p in aside.rglob("*") if p.is_file()} == {
        k: v for k, v in before.items() if k.parts[0] != "checkpoints"}
    assert logs(run) == logs(reference)


# ----------------------------------------------------------------- 3. checkpoints
def test_two_checkpoints_kept_fallback_to_the_previous_and_orphans_removed(
    tmp_path: Path, reference: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 41, 5: the run directory keeps its last two checkpoints; when the latest is unreadable the run
    resumes from the one before, saying so (the unreadable one is kept aside), and temp files of interrupted
    writes are removed. The resumed run still ends with the uninterrupted run's logs."""
    run = tmp_path / "run"
    assert main(capsys, *cli(run, 120))[0] == 0
    assert checkpoint_steps(run) == [120, 80]
    latest = run / CHECKPOINT_NAME
    latest.write_bytes(latest.read_bytes()[:1000])
    orphans = [latest.parent / ".latest.pt.0badc0de.tmp", run / ".evaluations.npz.12345678.tmp"]
    for orphan in orphans:
        orphan.write_bytes(b"half a file")
    code, out, err = main(capsys, *cli(run))
    assert code == 0 and "resuming at step 80" in out
    assert "Using the previous checkpoint" in err and "(step 80)" in err and "is not a readable checkpoint" in err
    assert not any(orphan.exists() for orphan in orphans)
    assert len(list(latest.parent.glob("latest.pt.unreadable-*"))) == 1
    assert checkpoint_steps(run) == [160, 120]
    assert logs(run) == logs(reference)


def test_corrupt_checkpoint_message_keeps_torchs_whole_text(tmp_path: Path) -> None:
    """Issue 41, 5: the message quoted torch's text cut at 200 characters, before its safety advice."""
    path = tmp_path / "latest.pt"
    torch.save({"format": agent.checkpoint.FORMAT, "x": io.BytesIO()}, path)  # not a weights-only payload
    with pytest.raises(Exception) as raw:
        torch.load(path, weights_only=True)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert len(str(raw.value)) > 200 and str(raw.value) in str(info.value)


def test_a_checkpoint_never_chooses_a_module_to_import(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 41, 5: a checkpoint whose env_id is ``module:Class`` made ``--evaluate`` import that module."""
    (tmp_path / "planted_module.py").write_text(f"open({str(tmp_path / 'imported')!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    run = tmp_path / "run"
    assert main(capsys, *cli(run, 20))[0] == 0
    payload = load_checkpoint(run / CHECKPOINT_NAME)
    payload["config"]["env_id"] = "planted_module:Env"
    agent.checkpoint.save_checkpoint(run / CHECKPOINT_NAME, {k: v for k, v in payload.items() if k != "format"})
    code, _, err = main(capsys, "--run-dir", str(run), "--evaluate", "1")
    assert code == 2 and "does not choose code to import" in err and "--env planted_module:Env" in err
    with pytest.raises(CheckpointError, match="does not choose code to import"):
        MBRLAgent.load(run / CHECKPOINT_NAME)
    assert not (tmp_path / "imported").exists() and "planted_module" not in sys.modules


# ----------------------------------------------------------------- 4. one error line per failure
@pytest.mark.parametrize("argv, code, says", [
    (["--seed", "-1"], 2, "--seed must be >= 0"),
    (["--env", "tests.fault_envs:ConstructorRaisesEnv", "--env-kwargs", "level=-1"], 2, "level must be >= 0"),
    (["--env", "rehearse/PointMass-v0", "--env-kwargs", "max_episode_steps=0"], 2, "max_episode_steps"),
    (["--env", "Pendulum-v1", "--env-kwargs", "g=abc"], 2, "failed on its first step"),
    (["--env", "tests.fault_envs:StepRaisesEnv", "--env-kwargs", "raise_after=60"], 1,
     "run the same command to resume"),
])
def test_failures_end_in_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: int, says: str
) -> None:
    """Issue 41, 3: bad env-kwarg values, constructors raising anything, a negative seed, an exception in the
    environment's step: one ``error:`` line, exit 2 for bad input, 1 for the environment's failure."""
    got, _, err = main(capsys, *TINY, "--total-timesteps", "100", "--run-dir", str(tmp_path / "run"), *argv)
    assert got == code and says in err
    assert err.count("error:") == 1 and "Traceback" not in err


@pytest.mark.parametrize("where", ["file", "parent"])
def test_a_run_dir_that_is_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str) -> None:
    (tmp_path / "f").write_text("x")
    run = tmp_path / "f" if where == "file" else tmp_path / "f" / "run"
    code, _, err = main(capsys, *cli(run, 20))
    assert code == 2 and f"{tmp_path / 'f'} is a file, not a folder" in err and "Traceback" not in err


def mount_tmpfs(path: Path, size: str) -> bool:
    """Mount a small tmpfs at ``path`` (root on Linux only); whether it worked."""
    path.mkdir(parents=True, exist_ok=True)
    if sys.platform != "linux" or os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path | None]:
    """A 2 MiB tmpfs (``None`` where it cannot be mounted: the tests then simulate the failure)."""
    disk = tmp_path / "disk"
    mounted = mount_tmpfs(disk, "2m")
    yield disk if mounted else None
    if mounted:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> Path:
    """Fill ``disk`` to the last byte; the filler file."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 512):
            pass
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def test_disk_full_ends_in_one_error_line_and_loses_nothing(
    tmp_path: Path, reference: Path, small_disk: Path | None, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 41, 3: a full disk (a small tmpfs, filled; else a checkpoint write raising ENOSPC) stops the run
    with one ``error:`` line and exit 1; once there is space the same command ends with the uninterrupted
    run's logs."""
    run = (small_disk or tmp_path) / "run"
    assert main(capsys, *cli(run, 80))[0] == 0
    if small_disk is not None:
        filler = fill(small_disk)
    else:
        def full(*args: Any, **kwargs: Any) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(agent.checkpoint.torch, "save", full)
    code, _, err = main(capsys, *cli(run))
    assert code == 1 and err.count("error:") == 1 and "Traceback" not in err
    assert "No space left on device" in err and "free some disk space" in err.lower()
    assert checkpoint_steps(run)[0] == 80
    if small_disk is not None:
        filler.unlink()
    monkeypatch.undo()
    assert main(capsys, *cli(run))[0] == 0
    assert logs(run) == logs(reference)


def test_read_only_run_dir_ends_in_one_error_line_and_loses_nothing(
    tmp_path: Path, reference: Path, small_disk: Path | None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 41, 3: a read-only run directory (a tmpfs remounted read-only; else without write permission)."""
    run = (small_disk or tmp_path) / "run"
    assert main(capsys, *cli(run, 80))[0] == 0
    if small_disk is not None:
        subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    elif os.geteuid() == 0:
        pytest.skip("root ignores permissions and no tmpfs can be mounted here")
    else:
        for path in (run, run / "checkpoints"):
            path.chmod(0o555)
    code, _, err = main(capsys, *cli(run))
    assert code == 1 and err.count("error:") == 1 and "Traceback" not in err and "writable" in err
    if small_disk is not None:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    else:
        for path in (run, run / "checkpoints"):
            path.chmod(0o755)
    assert checkpoint_steps(run)[0] == 80
    assert main(capsys, *cli(run))[0] == 0
    assert logs(run) == logs(reference)


# ----------------------------------------------------------------- 5. cheap checks first, one file mode
def test_replay_memory_is_checked_before_the_model_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 41, 4: the refusal came after the networks were built, and named a flag that does not exist."""
    import agent.agent
    import agent.buffer_io

    def no_model(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the model was built before the memory check")

    monkeypatch.setattr(agent.buffer_io, "available_memory_bytes", lambda: 10 * 2**20)
    monkeypatch.setattr(agent.agent, "make_adapter", no_model)
    code, _, err = main(capsys, *cli(tmp_path / "run", 20), "--train-buffer-capacity", "1000000")
    assert code == 2 and "--train-buffer-capacity" in err and "GiB" in err


def test_compare_checks_the_rehearse_preset_before_the_sweep(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 41, 5: ``compare --rehearse-preset nope`` ran the sweep and wrote a report."""
    from benchmarks import compare

    code = compare.main(["--env", "Pendulum-v1", "--total-timesteps", "100", "--out", str(tmp_path / "out"),
                         "--rehearse-preset", "nope", "--algos", "rehearse"])
    assert code == 2 and "no preset 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_outputs_have_one_file_mode(reference: Path) -> None:
    """Issue 41, 5: atomic writes left 0600 files (checkpoints, evaluations.npz) among 0644 ones."""
    modes = {str(p.relative_to(reference)): oct(p.stat().st_mode & 0o777) for p in reference.rglob("*") if p.is_file()}
    assert set(modes.values()) == {"0o644"}, modes


# ----------------------------------------------------------------- 6. real kills (a child process)
def killed_run(run_dir: Path, kind: str, n: int, steps: int = STEPS) -> int:
    """``train_agent.py`` in a child that SIGKILLs itself at ``kind``/``n`` (tests/fault_runner.py)."""
    proc = subprocess.run([sys.executable, "-m", "tests.fault_runner", kind, str(n), *cli(run_dir, steps)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    return proc.returncode


def test_a_kill_in_the_middle_of_a_checkpoint_write_loses_nothing(
    tmp_path: Path, reference: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGKILL halfway through writing the second checkpoint: the first survives, the temp file is removed on
    resume, and the same command ends with the uninterrupted run's logs."""
    run = tmp_path / "run"
    assert killed_run(run, "checkpoint", 2) == -signal.SIGKILL
    assert checkpoint_steps(run) == [40] and list(run.rglob(".latest.pt.*.tmp"))
    assert main(capsys, *cli(run))[0] == 0
    assert not list(run.rglob("*.tmp")) and checkpoint_steps(run) == [160, 120]
    assert logs(run) == logs(reference)


KILL_KINDS = ("step", "eval", "checkpoint")
KILL_RANGE = {"step": STEPS, "eval": 60, "checkpoint": 4}
"""``n`` is drawn below these: a step, an evaluation action (of this process), a checkpoint write (of this process)."""
STOP_ROUTES = ("SIGTERM", "SIGINT", "callback", "budget")


def random_kills(run: Path, rng: np.random.Generator, least: int, most: int) -> list[tuple[str, int, int]]:
    """``least`` to ``most`` real SIGKILLs of ``run``'s same command at random moments: (kind, n, exit status)
    each (exit status 0: the run ended before the moment came)."""
    kills = []
    for _ in range(int(rng.integers(least, most + 1))):
        kind = str(rng.choice(KILL_KINDS))
        n = int(rng.integers(1, KILL_RANGE[kind]))
        code = killed_run(run, kind, n)
        assert code in (0, -signal.SIGKILL), (kind, n, code)
        kills.append((kind, n, code))
    return kills


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(6))
def test_random_kills_then_resume_equal_an_uninterrupted_run(
    tmp_path: Path, reference: Path, capsys: pytest.CaptureFixture[str], seed: int
) -> None:
    """One to three SIGKILLs at seeded random moments (mid-episode, mid-evaluation, mid-checkpoint-write, before
    the first checkpoint), each followed by the same command: the final logs equal the uninterrupted run's and
    the checkpoints end as its do."""
    run = tmp_path / "run"
    kills = random_kills(run, np.random.default_rng(seed), 1, 3)
    with capsys.disabled():
        print(f"\nkills (kind, n, exit status): {kills}")
    assert main(capsys, *cli(run))[0] == 0
    assert logs(run) == logs(reference)
    assert checkpoint_steps(run) == checkpoint_steps(reference)


def signal_run(run: Path, signum: signal.Signals, delay: float) -> int:
    """The same command in a child, sent ``signum`` ``delay`` seconds after its first log row; its exit status."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.fault_runner", "none", "0", *cli(run)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (run / "progress.csv").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(delay)
    proc.send_signal(signum)
    return proc.wait(timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("route", STOP_ROUTES)
@pytest.mark.parametrize("seed", range(2))
def test_stop_routes_then_kills_then_resume_equal_a_run_stopped_at_the_same_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], route: str, seed: int
) -> None:
    """A stop at a random moment by each route (SIGTERM, SIGINT, a callback, a budget reached then extended),
    then up to two random SIGKILLs and the same command: the logs equal those of a run stopped by a callback at
    the same step and continued without a fault (a stop mid-episode ends that episode, so an uninterrupted run
    is not the reference)."""
    rng = np.random.default_rng(100 + seed)
    run, expected = tmp_path / "run", tmp_path / "expected"
    if route in ("SIGTERM", "SIGINT"):
        code = signal_run(run, signal.Signals[f"SIG{route[3:]}"], float(rng.uniform(0.0, 3.0)))
        assert code in (0, 128 + signal.Signals[f"SIG{route[3:]}"]), code
    elif route == "callback":
        learn(run, stop_at=int(rng.integers(1, STEPS)))
    else:
        assert main(capsys, *cli(run, int(rng.integers(1, STEPS))))[0] == 0
    stopped_at = checkpoint_steps(run)[0] if run_checkpoints(run) else 0
    kills = random_kills(run, rng, 0, 2)
    with capsys.disabled():
        print(f"\n{route} stop at step {stopped_at}; kills (kind, n, exit status): {kills}")
    assert main(capsys, *cli(run))[0] == 0
    if stopped_at:
        learn(expected, stop_at=stopped_at)
    learn(expected)
    assert logs(run) == logs(expected)
    assert checkpoint_steps(run)[0] == STEPS
