"""The read stage on names that are not UTF-8: listed with their bytes escaped, read back as one
``bad_name`` row each, never confused with a valid name that merely holds a backslash."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from m2fp_batch.pipeline.inputs import stage_listing
from m2fp_batch.pipeline.reading import escape_name, read_batch, unescape_name
from m2fp_batch.storage import Filesystems, S3Options
from m2fp_batch.video import Sampling


def _touch(d: Path, raw: bytes, data: bytes = b"not empty") -> None:
    with open(os.fsencode(d) + b"/" + raw, "wb") as f:
        f.write(data)


def test_escaped_names_by_hand(tmp_path):
    for raw, escaped in [
        (b"caf\xe9.jpg", "caf\\xe9.jpg"),  # Latin-1 e-acute
        (b"a\\b\xff.jpg", "a\\\\b\\xff.jpg"),  # a backslash doubled beside a bad byte
        (b"\xc3\xa9t\xe9.png", "\u00e9t\\xe9.png"),  # valid UTF-8 kept, the bad byte escaped
    ]:
        _touch(tmp_path, raw)
        path = os.fsdecode(os.fsencode(tmp_path) + b"/" + raw)
        assert escape_name(path) == f"{tmp_path}/{escaped}"
        assert unescape_name(escape_name(path)) == os.fsencode(path)


def test_a_valid_name_with_a_backslash_is_not_a_bad_name(tmp_path):
    _touch(tmp_path, b"caf\\xe9.jpg")  # the seven characters c a f \ x e 9: valid UTF-8
    uri = f"{tmp_path}/caf\\xe9.jpg"
    assert escape_name(uri) == uri
    assert unescape_name(uri) is None  # no file b"caf\xe9.jpg" exists


def test_listing_and_read_give_one_bad_name_row_and_read_the_rest(tmp_path):
    _touch(tmp_path, b"caf\xe9.jpg")
    _touch(tmp_path, b"ok.jpg", b"plain bytes")
    work = tmp_path.parent / f"{tmp_path.name}_work"
    work.mkdir()
    listing = pq.read_table(stage_listing(str(tmp_path), Filesystems(), str(work)).path)
    uris = listing.column("uri").to_pylist()
    assert uris == [f"{tmp_path}/caf\\xe9.jpg", f"{tmp_path}/ok.jpg"]
    read = pa.concat_tables(read_batch(listing, S3Options(), 1000, Sampling(), 10**8)).to_pylist()
    assert [(r["read_error_kind"], r["data"]) for r in read] == [("bad_name", None), (None, b"plain bytes")]
    assert read[0]["read_error"] == (
        f"the file name is not valid UTF-8: {tmp_path}/caf\\xe9.jpg (its bytes escaped); rename it to UTF-8"
    )
