"""The ``/results/...`` store: PNGs of recent answers, bounded in entries and bytes (oldest out first)."""

from __future__ import annotations

import secrets
from collections import OrderedDict


class ResultCache:
    """An LRU of ``{name: PNG bytes}`` with at most ``max_entries`` names and ``max_bytes`` bytes.

    Names are unguessable (128 random bits), since a result is a picture of someone's upload.
    """

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self.nbytes = 0

    @staticmethod
    def new_id() -> str:
        return secrets.token_hex(16)

    def put(self, name: str, data: bytes) -> bool:
        """Keep ``data`` (False when it alone exceeds ``max_bytes``), evicting the oldest as needed."""
        if len(data) > self.max_bytes:
            return False
        old = self._items.pop(name, None)
        if old is not None:
            self.nbytes -= len(old)
        self._items[name] = data
        self.nbytes += len(data)
        while len(self._items) > self.max_entries or self.nbytes > self.max_bytes:
            _, dropped = self._items.popitem(last=False)
            self.nbytes -= len(dropped)
        return True

    def get(self, name: str) -> bytes | None:
        data = self._items.get(name)
        if data is not None:
            self._items.move_to_end(name)
        return data

    def __len__(self) -> int:
        return len(self._items)
