"""The pending rows as a Ray Data source that reads ``_inputs.parquet`` as the pipeline pulls.

The driver never holds the pending rows: each read task is one block of the guided schedule
(:func:`~.schedule.block_plan`) and carries only where its rows start and how many they are; it
reads them from the listing (the one or two row groups that hold them). One read task per block,
because Ray Data joins the blocks one read task yields into one: a read task of many blocks would
reach the actors as one block, and a small job would go to one actor while the others wait.
Read tasks run on the driver's node, where a local output lives; they take no CPU, so a full
actor pool never starves them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from m2fp_batch.labels.layout import INPUTS_FILE
from m2fp_batch.pipeline.schedule import Plan, block_plan
from m2fp_batch.storage import Filesystems, S3Options

__all__ = ["ListingSpan", "listing_dataset", "listing_version", "read_span", "spans"]

ROW_BYTES_ESTIMATE = 200  # a listing row in memory (Ray Data's size estimate only)
LISTING_READERS = 2  # read tasks at once


@dataclass(frozen=True)
class ListingSpan:
    """One block of the pipeline: ``rows`` consecutive pending rows of the listing from ``start``."""

    start: int
    rows: int


def spans(plan: Plan, actors: int, batch_size: int) -> Iterator[ListingSpan]:
    """The pending rows cut into the blocks of the guided schedule (never across a shard)."""
    sizes = block_plan(((s, n) for s, _, n in plan.spans()), plan.pending_rows, actors, batch_size)
    for _, first, rows in plan.spans():
        cut = 0
        while cut < rows:
            n = next(sizes)
            yield ListingSpan(first + cut, n)
            cut += n


def _inputs_path(out_uri: str, s3: S3Options):
    fs, root = Filesystems(s3).resolve(out_uri)
    return fs, root.rstrip("/") + "/" + INPUTS_FILE


def listing_version(out_uri: str, s3: S3Options) -> tuple[int, int | None]:
    """Which ``_inputs.parquet`` this is (size, mtime): a rerun that rewrites it is not read from the cache."""
    fs, path = _inputs_path(out_uri, s3)
    info = fs.get_file_info(path)
    return info.size, info.mtime_ns


@functools.lru_cache(maxsize=4)
def _listing(out_uri: str, s3: S3Options, version: tuple) -> tuple[pq.FileMetaData, tuple[int, ...]]:
    """The listing's footer and the first row of each row group, read once per worker process."""
    fs, path = _inputs_path(out_uri, s3)
    meta = pq.read_metadata(path, filesystem=fs)
    starts, at = [], 0
    for i in range(meta.num_row_groups):
        starts.append(at)
        at += meta.row_group(i).num_rows
    return meta, tuple(starts)


def read_span(out_uri: str, s3: S3Options, span: ListingSpan, version: tuple = ()) -> Iterator[pa.Table]:
    """Read ``span``'s rows of ``out_uri/_inputs.parquet`` (only the row groups that hold them);
    ``version``: :func:`listing_version`."""
    meta, starts = _listing(out_uri, s3, version)
    end = span.start + span.rows
    groups = [i for i, at in enumerate(starts) if at < end and at + meta.row_group(i).num_rows > span.start]
    fs, path = _inputs_path(out_uri, s3)
    pf = pq.ParquetFile(path, filesystem=fs, metadata=meta)
    yield pf.read_row_groups(groups).slice(span.start - starts[groups[0]], span.rows)


def listing_dataset(out_uri: str, s3: S3Options, plan: Plan, actors: int, batch_size: int, schema: pa.Schema):
    """The pending rows as a Ray Data dataset whose read tasks read the listing (see the module)."""
    import ray.data as rd
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    version = listing_version(out_uri, s3)

    class _PendingRows(Datasource):
        supports_distributed_reads = False  # on the driver's node, where a local output lives

        def estimate_inmemory_data_size(self) -> int:
            return plan.pending_rows * ROW_BYTES_ESTIMATE

        def get_read_tasks(self, parallelism: int, per_task_row_limit=None, data_context=None) -> list:
            return [
                ReadTask(
                    functools.partial(read_span, out_uri, s3, span, version),
                    BlockMetadata(span.rows, span.rows * ROW_BYTES_ESTIMATE, None, None),
                    schema=schema,
                )
                for span in spans(plan, actors, batch_size)
            ]

    # override_num_blocks=1: Ray Data must not split the blocks (their sizes are the schedule)
    return rd.read_datasource(_PendingRows(), num_cpus=0, concurrency=LISTING_READERS, override_num_blocks=1)
