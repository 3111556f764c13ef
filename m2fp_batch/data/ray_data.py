"""``ray_dataset(source)``: the records of :class:`ParsingDataset` as a Ray Dataset (for Ray Train)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from m2fp_batch.data.dataset import ParsingDataset

__all__ = ["ray_dataset"]


class _Load:
    """Row ``{"index": i}`` -> sample ``i`` of the dataset (one dataset, and its shard cache, per worker)."""

    def __init__(self, dataset: ParsingDataset) -> None:
        self.dataset = dataset

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        return self.dataset[int(row["index"])]


def ray_dataset(source: str | Path | ParsingDataset, *, split: str | None = None, blocks: int | None = None):
    """A Ray Dataset with one record per sample of ``ParsingDataset(source)``, same keys and arrays.

    Records are produced lazily, shard by shard (each block holds consecutive indices of one
    order that visits shards in turn), so each Ray task reads each shard once.

    Raises:
        LabelsError: as :class:`ParsingDataset`.
    """
    import ray

    ds = source if isinstance(source, ParsingDataset) else ParsingDataset(source, split=split)
    order = ds.shard_order()
    n_blocks = blocks or max(1, min(len(order), len({ds.refs[i].file for i in order}) * 2, 200))
    items = ray.data.from_items([{"index": i} for i in order], override_num_blocks=n_blocks)
    return items.map(_Load(ds))
