"""train --workers by default: one per CPU, capped by the batch and by available memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from m2fp_batch.train import settings
from m2fp_batch.train.settings import WORKER_MEMORY_BYTES, default_workers


@pytest.mark.parametrize(
    ("cpus", "batch", "memory", "want"),
    [
        (2, 2, 64 * 2**30, 2),  # this machine's case: two one-thread workers (measured 1.31x faster)
        (1, 2, 64 * 2**30, 1),  # never more workers than CPUs (Ray would wait for them)
        (8, 2, 64 * 2**30, 2),  # never more workers than images per step
        (8, 16, 3 * WORKER_MEMORY_BYTES + 1, 3),  # one per 4 GB of available memory
        (8, 16, WORKER_MEMORY_BYTES // 2, 1),  # at least one
        (4, 4, None, 4),  # no /proc/meminfo: no memory cap
    ],
)
def test_default_workers(monkeypatch, cpus, batch, memory, want):
    monkeypatch.setattr(settings.os, "cpu_count", lambda: cpus)
    monkeypatch.setattr(settings, "_available_memory", lambda: memory)
    assert default_workers(batch) == want
    assert default_workers(batch, use_gpu=True) == 1


@pytest.mark.skipif(not Path("/proc/meminfo").exists(), reason="reads Linux's /proc/meminfo")
def test_available_memory_reads_this_machine():
    """The kernel's MemAvailable in bytes, as psutil (an independent reader) reports it."""
    import psutil

    memory = settings._available_memory()
    vm = psutil.virtual_memory()
    assert memory is not None and 0 < memory <= vm.total
    assert abs(memory - psutil.virtual_memory().available) <= 256 * 2**20  # other processes move it a little
