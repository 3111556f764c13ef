"""release_free_memory: freed heap pages go back to the system (glibc), a no-op elsewhere."""

from __future__ import annotations

import platform

import numpy as np
import pytest

from m2fp_batch import memory


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("VmRSS")).split()[1]) / 1024


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_freed_heap_pages_go_back_to_the_system():
    # 4,000 chunks of 64 kB (under glibc's mmap threshold: they live in the heap), then one more
    # chunk above them, so freeing them cannot shrink the heap from its top by itself
    chunks = [np.ones(8_000, np.float64) for _ in range(4_000)]
    pin = np.ones(8_000, np.float64)
    before = _rss_mib()
    chunks.clear()
    kept = _rss_mib()
    memory.release_free_memory()
    assert kept > before - 100  # glibc kept the freed 250 MB
    assert _rss_mib() < kept - 200  # malloc_trim gave them back
    del pin


def test_without_glibc_it_does_nothing(monkeypatch):
    memory._malloc_trim.cache_clear()
    monkeypatch.setattr(memory.ctypes.util, "find_library", lambda name: None)
    try:
        memory.release_free_memory()  # no error, nothing to trim
        assert memory._malloc_trim() is None
    finally:
        memory._malloc_trim.cache_clear()
