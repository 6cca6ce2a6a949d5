"""agent.runtime: freed memory is reused, not faulted in again."""

from __future__ import annotations

import resource
import sys

import pytest
import torch

from agent.runtime import keep_freed_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_tensors_reuse_their_pages() -> None:
    assert keep_freed_memory() is True
    assert keep_freed_memory() is True  # idempotent
    size = 6 << 20  # a planning-sized block (PETS: 5 x 1604 x 200 floats), under the 32 MiB mmap threshold
    torch.empty(size // 4).fill_(1.0)  # first touch may fault
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        torch.empty(size // 4).fill_(1.0)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    block = size // 4096  # pages per block; glibc's default settings faulted in about 7 blocks' worth here
    assert faults <= 2 * block, f"{faults} page faults for 20 reused blocks of {block} pages"
