"""world_models.fast: one switch, the fast path imagines what the reference path does, threads follow
what the process is given, worker threads and the allocator setting keep their contracts."""

from __future__ import annotations

import os
import resource
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import world_models.fast as fast
from world_models.config import RoboticsConfig, ValueConfig
from world_models.ensemble import Layers
from world_models.robotics import RoboticsWorldModel

ROLLOUT_FIELDS = ("rewards", "continuation", "costs", "latents", "terminal_value")


@pytest.fixture
def fast_on() -> Iterator[None]:
    before = fast.set_fast(True)
    yield
    fast.set_fast(before)


def _fitted_model(ensemble_size: int = 3, num_layers: int = 3,
                  continuation_from: str = "transition") -> RoboticsWorldModel:
    torch.manual_seed(0)
    network = RoboticsConfig(ensemble_size=ensemble_size, hidden_dim=16, num_layers=num_layers,
                             continuation_from=continuation_from)
    model = RoboticsWorldModel(3, 2, network, ValueConfig(function=True, tau=0.005))
    data = torch.randn(60, 3) * 2 + 1
    model.fit_normalizers(data, torch.rand(60, 2), torch.randn(60), data + torch.randn(60, 3))
    return model


def _assert_same_rollout(a: object, b: object) -> None:
    for name in ROLLOUT_FIELDS:
        torch.testing.assert_close(getattr(a, name), getattr(b, name))


@pytest.mark.parametrize("continuation_from", ["transition", "next_state"])
def test_the_switch_chooses_the_path_and_both_imagine_the_same_rollout(
    continuation_from: str, monkeypatch: pytest.MonkeyPatch, fast_on: None
) -> None:
    model = _fitted_model(continuation_from=continuation_from)
    z0, actions = torch.randn(3 * 8, 3), torch.rand(6, 3 * 8, 2) * 2 - 1
    used: list[str] = []
    real = fast.imagine_in_place

    def counted(*args: torch.Tensor | Layers) -> tuple[torch.Tensor, torch.Tensor]:
        used.append("fast")
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr("world_models.robotics.imagine_in_place", counted)
    with torch.inference_mode():
        quick = model.imagine(z0, actions)
        assert fast.set_fast(False) is True
        reference = model.imagine(z0, actions)
    assert used == ["fast"] and not fast.fast_enabled()
    _assert_same_rollout(quick, reference)
    fast.set_fast(True)
    traced = model.imagine(z0, actions)  # with gradients: always the reference path
    assert used == ["fast"]
    for name in ROLLOUT_FIELDS:
        torch.testing.assert_close(getattr(quick, name), getattr(traced, name).detach())


def test_the_environment_sets_the_switch_and_a_bad_value_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REHEARSE_FAST", "0")
    assert fast._switch_from_environment() is False
    monkeypatch.setenv("REHEARSE_FAST", "1")
    assert fast._switch_from_environment() is True
    monkeypatch.setenv("REHEARSE_FAST", "yes")
    with pytest.raises(ValueError, match="REHEARSE_FAST must be 0 .* or 1"):
        fast._switch_from_environment()


def test_available_threads_follow_the_affinity_mask_and_omp_num_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fast.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert fast.available_threads() == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert fast.available_threads() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "8,2")  # more than the mask: the mask wins
    assert fast.available_threads() == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "junk")  # not a count: ignored
    assert fast.available_threads() == 4
    monkeypatch.setattr(fast.os, "sched_getaffinity", lambda pid: {5}, raising=False)
    assert fast.available_threads() == 1


def test_configure_process_lowers_torch_threads_to_what_is_available(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        monkeypatch.setattr(fast, "available_threads", lambda: 2)
        fast.configure_process()
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)  # a lower count set by the user stays
        fast.configure_process()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


# ----------------------------------------------------------------- the in-place path's blocks and chunks
def test_row_blocks_balance_members_over_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert fast.row_blocks(5, 1604) == 2  # 10 products for 2 threads
    assert fast.row_blocks(4, 1604) == 1  # 4 members already divide over 2 threads
    assert fast.row_blocks(5, 97) == 1  # odd rows per member: not cut
    assert fast.row_blocks(5, 100) == 1  # blocks of 50 rows: too small to be worth it
    monkeypatch.setattr(torch, "get_num_threads", lambda: 6)
    assert fast.row_blocks(4, 1200) == 3  # 12 products for 6 threads


def test_imagine_cut_into_row_blocks_equals_uncut(monkeypatch: pytest.MonkeyPatch, fast_on: None) -> None:
    model = _fitted_model(num_layers=2)
    z0, actions = torch.randn(3 * 128, 3), torch.rand(4, 3 * 128, 2) * 2 - 1
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    monkeypatch.setattr(fast, "row_chunks", lambda *args: 0)
    assert fast.row_blocks(3, 128) == 2
    with torch.inference_mode():
        cut = model.imagine(z0, actions)
        monkeypatch.setattr(fast, "row_blocks", lambda ensemble_size, rows_per_member: 1)
        whole = model.imagine(z0, actions)
    _assert_same_rollout(cut, whole)


def test_row_chunks_cut_large_batches_evenly_for_the_threads() -> None:
    assert fast.row_chunks(5, 1604, threads=2) == 2  # PETS: 10 chunks of 802 rows, 5 per worker
    assert fast.row_chunks(5, 970, threads=2) == 0  # 10 chunks would hold 485 rows: too few
    assert fast.row_chunks(5, 97, threads=2) == 0  # HalfCheetah's preset, one problem
    assert fast.row_chunks(5, 1604, threads=1) == 0  # one thread: the batched products
    assert fast.row_chunks(4, 1300, threads=2) == 2  # 1,300 rows are too many for one chunk
    assert fast.row_chunks(4, 2600, threads=4) == 4  # 4 chunks of 650: 3 would not divide the rows


def test_threaded_imagination_in_chunks_equals_the_batched_products(
    monkeypatch: pytest.MonkeyPatch, fast_on: None
) -> None:
    """Imagined chunk by chunk on worker threads, a rollout is the one the batched products imagine."""
    model = _fitted_model()
    z0, actions = torch.randn(3 * 96, 3), torch.rand(5, 3 * 96, 2) * 2 - 1
    monkeypatch.setattr(fast, "CHUNK_ROWS", (16, 32))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    monkeypatch.setattr(fast, "available_threads", lambda: 2)
    assert fast.row_chunks(3, 96, 2) == 4  # 12 chunks of 24 rows, 6 per worker
    calls: list[int] = []
    real_run = fast.ChunkSteps.run

    def counted_run(self: fast.ChunkSteps, g: int) -> None:
        calls.append(g)
        real_run(self, g)

    monkeypatch.setattr(fast.ChunkSteps, "run", counted_run)
    with torch.inference_mode():
        chunked = model.imagine(z0, actions)
        assert sorted(calls) == list(range(12))
        monkeypatch.setattr(fast, "row_chunks", lambda *args: 0)
        batched = model.imagine(z0, actions)
    assert len(calls) == 12
    _assert_same_rollout(chunked, batched)
    monkeypatch.setattr(fast, "row_chunks", lambda *args: 4)
    with torch.no_grad():  # outside inference mode the workers write ordinary tensors
        torch.testing.assert_close(model.imagine(z0, actions).latents, chunked.latents)
    assert len(calls) == 24


# ----------------------------------------------------------------- worker threads
def test_results_come_back_in_order_from_single_threaded_workers_in_inference_mode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def probe(i: int) -> tuple[int, int, bool]:
        return i * i, torch.get_num_threads(), torch.is_inference_mode_enabled()

    monkeypatch.setattr(fast, "available_threads", lambda: 2)
    threads_before = torch.get_num_threads()
    results = fast.map_on_cores(probe, range(7), workers=2)
    assert [r[0] for r in results] == [i * i for i in range(7)]
    assert all(threads == 1 and inference for _, threads, inference in results)
    assert torch.get_num_threads() == threads_before and not torch.is_inference_mode_enabled()  # the caller's


def test_never_more_workers_than_available_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fast, "available_threads", lambda: 1)  # one core: everything runs here, in order
    assert fast.map_on_cores(lambda i: (i, torch.is_inference_mode_enabled()), [3, 4], workers=8) == [(3, True),
                                                                                                      (4, True)]


def test_an_error_in_a_worker_is_raised_to_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(i: int) -> int:
        if i == 2:
            raise ValueError("chunk 2 failed")
        return i

    monkeypatch.setattr(fast, "available_threads", lambda: 2)
    with pytest.raises(ValueError, match="chunk 2 failed"):
        fast.map_on_cores(fail, range(4), workers=2)
    assert fast.map_on_cores(lambda i: i + 1, range(3), workers=2) == [1, 2, 3]  # the pool still works


# ----------------------------------------------------------------- allocator
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_tensors_reuse_their_pages() -> None:
    assert fast.keep_freed_memory() is True
    assert fast.keep_freed_memory() is True  # idempotent
    size = 6 << 20  # a planning-sized block (PETS: 5 x 1604 x 200 floats), under the 32 MiB mmap threshold
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the allocator alone: with idle OpenMP workers sleeping (OMP_WAIT_POLICY=PASSIVE) a
    # 2-thread fill_ adds page faults of its own in a fresh process, which is not what is tested here
    try:
        for _ in range(3):  # first touches may fault, and the heap may grow while it settles
            torch.empty(size // 4).fill_(1.0)
        # this thread's faults only: threads that earlier tests left running (servers, proposers) fault on their own
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        for _ in range(20):
            torch.empty(size // 4).fill_(1.0)
        faults = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before
    finally:
        torch.set_num_threads(threads)
    block = size // 4096  # pages per block
    assert faults <= 2 * block, f"{faults} page faults for 20 reused blocks of {block} pages"


@pytest.mark.parametrize("given, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_importing_rehearse_makes_idle_openmp_threads_sleep(given: str | None, expected: str) -> None:
    """Before torch loads OpenMP, importing the agent sets OMP_WAIT_POLICY=PASSIVE unless the user set it."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    code = "import agent, os, sys; print(os.environ['OMP_WAIT_POLICY'], 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                         cwd=str(Path(__file__).resolve().parent.parent)).stdout.split()
    assert out == [expected, "True"]


def test_torch_threads_sets_caps_and_restores(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    monkeypatch.setattr(fast, "available_threads", lambda: 2)
    torch.set_num_threads(2)
    try:
        with fast.torch_threads(1):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with fast.torch_threads(16):
            assert torch.get_num_threads() == 2  # never above what the process may use
        with fast.torch_threads(0):
            assert torch.get_num_threads() == 2  # 0: as it is
        with pytest.raises(RuntimeError), fast.torch_threads(1):
            raise RuntimeError("restored on errors too")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_wide_threads_only_where_a_core_is_spare(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fast, "available_threads", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (1.0, 1.0, 1.0))  # this process alone
    assert fast.spare_cores() == 1.0 and fast.wide_threads(2, 1) == 2
    monkeypatch.setattr(os, "getloadavg", lambda: (2.3, 2.0, 2.0))  # another job runs
    assert fast.spare_cores() == 0.0 and fast.wide_threads(2, 1) == 1
    assert fast.wide_threads(1, 1) == 1
