"""release_free_memory: freed heap pages go back to the system (glibc), a no-op elsewhere;
release_mapped_store_pages: the object store's pages leave the resident set, their bytes stay."""

from __future__ import annotations

import mmap
import os
import platform
from pathlib import Path

import numpy as np
import pytest

from m2fp_batch import memory


def _rss_mib(field: str = "VmRSS") -> float:
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith(field)).split()[1]) / 1024


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
    memory._libc.cache_clear()
    monkeypatch.setattr(memory.ctypes.util, "find_library", lambda name: None)
    try:
        memory.release_free_memory()  # no error, nothing to trim
        assert memory._malloc_trim() is None
    finally:
        memory._libc.cache_clear()


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="needs /dev/shm (Linux)")
def test_store_pages_leave_the_resident_set_and_keep_their_bytes():
    size = 64 * 2**20
    path = Path("/dev/shm") / f"plasma-m2fp-test-{os.getpid()}"  # named like Ray's store
    with path.open("w+b") as f:
        f.truncate(size)
        store = mmap.mmap(f.fileno(), size)  # MAP_SHARED, as Ray maps it
    try:
        store[:] = bytes(range(256)) * (size // 256)  # every page touched
        mapped = _rss_mib("RssShmem")
        assert memory.release_mapped_store_pages() >= size
        assert _rss_mib("RssShmem") < mapped - 50  # gone from this process's resident set
        assert store[: 256 * 4] == bytes(range(256)) * 4 and store[size - 1] == 255  # the bytes stay
    finally:
        store.close()
        path.unlink()


def test_only_shared_store_mappings_are_released():
    maps = (
        "7f0000000000-7f0000400000 rw-s 00000000 00:1b 901  /dev/shm/plasmaAbC (deleted)\n"
        "7f0000400000-7f0000800000 rw-p 00000000 00:1b 902  /dev/shm/plasmaPrivate\n"
        "7f0000800000-7f0000c00000 rw-s 00000000 00:1b 903  /dev/shm/other\n"
        "55ff28cf6000-55ff32968000 rw-p 00000000 00:00 0    [heap]\n"
    )
    assert memory._store_ranges(maps) == [(0x7F0000000000, 0x7F0000400000)]
