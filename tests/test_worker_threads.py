"""map_on_cores: results in order, one intra-op thread and inference mode in each worker, errors raised."""

from __future__ import annotations

import pytest
import torch

from world_models.worker_threads import map_on_cores


def test_results_come_back_in_order_from_single_threaded_workers_in_inference_mode() -> None:
    def probe(i: int) -> tuple[int, int, bool]:
        return i * i, torch.get_num_threads(), torch.is_inference_mode_enabled()

    threads_before = torch.get_num_threads()
    results = map_on_cores(probe, range(7), workers=2)
    assert [r[0] for r in results] == [i * i for i in range(7)]
    assert all(threads == 1 and inference for _, threads, inference in results)
    assert torch.get_num_threads() == threads_before and not torch.is_inference_mode_enabled()  # the caller's


def test_one_worker_runs_inline_in_inference_mode() -> None:
    assert map_on_cores(lambda i: (i, torch.is_inference_mode_enabled()), [3], workers=1) == [(3, True)]


def test_an_error_in_a_worker_is_raised_to_the_caller() -> None:
    def fail(i: int) -> int:
        if i == 2:
            raise ValueError("chunk 2 failed")
        return i

    with pytest.raises(ValueError, match="chunk 2 failed"):
        map_on_cores(fail, range(4), workers=2)
    assert map_on_cores(lambda i: i + 1, range(3), workers=2) == [1, 2, 3]  # the pool still works
