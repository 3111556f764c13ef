"""The pending rows as a Ray Data source that reads ``_inputs.parquet`` as the pipeline pulls.

The driver never holds the pending rows: each read task covers a run of consecutive pending
rows (about :data:`~m2fp_batch.pipeline.inputs.LISTING_BATCH_ROWS`, whole shards) and carries
only where the run starts and the sizes of its blocks (:func:`~.schedule.block_plan`, the
guided schedule); it reads those rows from the listing and yields the blocks. Read tasks run
on the driver's node, where a local output lives; they take no CPU, so a full actor pool never
starves them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from m2fp_batch.labels.layout import INPUTS_FILE
from m2fp_batch.pipeline.inputs import LISTING_BATCH_ROWS
from m2fp_batch.pipeline.schedule import Plan, block_plan
from m2fp_batch.storage import Filesystems, S3Options

__all__ = ["ListingSpan", "listing_dataset", "read_span", "spans"]

ROW_BYTES_ESTIMATE = 200  # a listing row in memory (Ray Data's size estimate only)
LISTING_READERS = 2  # read tasks at once (each holds one run of listing rows)


@dataclass(frozen=True)
class ListingSpan:
    """Consecutive pending rows of the listing, ``start`` the first row, cut into ``blocks``."""

    start: int
    blocks: tuple[int, ...]

    @property
    def rows(self) -> int:
        return sum(self.blocks)


def spans(plan: Plan, actors: int, batch_size: int) -> Iterator[ListingSpan]:
    """The pending rows as spans of whole shards, each about ``LISTING_BATCH_ROWS`` rows or one shard."""
    sizes = block_plan(((s, n) for s, _, n in plan.spans()), plan.pending_rows, actors, batch_size)
    start, blocks, end = None, [], None
    for _, first, rows in plan.spans():
        if start is not None and (first != end or end - start >= LISTING_BATCH_ROWS):
            yield ListingSpan(start, tuple(blocks))
            start, blocks = None, []
        if start is None:
            start = first
        end, cut = first + rows, 0
        while cut < rows:
            n = next(sizes)
            blocks.append(n)
            cut += n
    if start is not None:
        yield ListingSpan(start, tuple(blocks))


def read_span(out_uri: str, s3: S3Options, span: ListingSpan) -> Iterator[pa.Table]:
    """Read ``span``'s rows of ``out_uri/_inputs.parquet`` (only the row groups that hold them)
    and yield its blocks."""
    fs, root = Filesystems(s3).resolve(out_uri)
    pf = pq.ParquetFile(root.rstrip("/") + "/" + INPUTS_FILE, filesystem=fs)
    groups, first, at = [], None, 0
    for i in range(pf.metadata.num_row_groups):
        n = pf.metadata.row_group(i).num_rows
        if at + n > span.start and at < span.start + span.rows:
            groups.append(i)
            first = at if first is None else first
        at += n
    table = pf.read_row_groups(groups).slice(span.start - first, span.rows)
    offset = 0
    for n in span.blocks:
        yield table.slice(offset, n)
        offset += n


def listing_dataset(out_uri: str, s3: S3Options, plan: Plan, actors: int, batch_size: int, schema: pa.Schema):
    """The pending rows as a Ray Data dataset whose read tasks read the listing (see the module)."""
    import ray.data as rd
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    class _PendingRows(Datasource):
        supports_distributed_reads = False  # on the driver's node, where a local output lives

        def estimate_inmemory_data_size(self) -> int:
            return plan.pending_rows * ROW_BYTES_ESTIMATE

        def get_read_tasks(self, parallelism: int, per_task_row_limit=None, data_context=None) -> list:
            return [
                ReadTask(
                    functools.partial(read_span, out_uri, s3, span),
                    BlockMetadata(span.rows, span.rows * ROW_BYTES_ESTIMATE, None, None),
                    schema=schema,
                )
                for span in spans(plan, actors, batch_size)
            ]

    # override_num_blocks=1: Ray Data must not split the blocks (their sizes are the schedule)
    return rd.read_datasource(_PendingRows(), num_cpus=0, concurrency=LISTING_READERS, override_num_blocks=1)
