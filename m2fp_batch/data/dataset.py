"""``ParsingDataset``: the labelled images of a job output as a PyTorch dataset.

Sources: a job output or an ``export-reviewed`` dir (local or ``s3://``, read with
:mod:`m2fp_batch.labels`), a CIHP-layout dir (``m2fp-batch export --format cihp``, or the CIHP
release) or a COCO ``.json`` file (``export --format coco`` or another tool's, :mod:`.coco`). Only ``ok`` rows are samples; rows a reviewer ``rejected`` are left out too.

``ds[i]`` is a dict of numpy arrays at the image's own size::

    image       (H, W, 3) uint8   the photo, decoded like the job decodes it (EXIF orientation applied)
    semantic    (H, W) int64      CIHP class ids, 0 = background
    humans      (H, W) int64      person ids, person k of the row is k + 1, 0 = background
    parts       (H, W) int64      part-instance ids (one per (person, part)), 0 = background
    image_id    str
    skin_tones  list[str]         skin-tone group of each person (light, medium, dark, unknown)
    skin_sources list[str]        how each group was obtained: measured, derived, reviewed
    skin_details list[dict]       each person's full tone (SkinTone fields: ITA, hue, Monk, pixels, ...)
    video_id    str | None        a video frame's video (None: a photo)
    frame_index int | None        a video frame's index in its video
    track_ids   list[int | None]  each person's track (identity within the video; None: a photo's person)

A video frame of a job output is read from its video (:func:`m2fp_batch.labels.row_pixels`), exactly
the frame the job labelled. ``ds.videos()`` groups the frames: video id -> sample indices in frame
order (photos are in no group).

Where the data holds no tone for a person (a CIHP dir without meta, the CIHP release, schema v1,
a person a reviewer added) it is derived from the person's ground-truth skin parts with the job's
estimator and marked ``derived`` (:mod:`m2fp_batch.data.skin`).

Images differ in size, so batch them after a ``transform`` that crops or resizes (or with a
``collate_fn`` of your own). ``ds.refs[i]`` (image id, uri, persons per skin-tone group) needs no
image or mask reading, e.g. for a balanced sampler. Rows are read one shard at a time and the last ``cache_shards``
shards are kept per process: visit indices shard by shard (``shard_order``) for speed on large
outputs.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch.utils.data

from m2fp_batch.data.coco import CocoLabels, is_coco_file
from m2fp_batch.data.skin import person_tones, tone_fields
from m2fp_batch.decode import DEFAULT_MAX_PIXELS, ImageError
from m2fp_batch.formats import cihp
from m2fp_batch.labels import LabelsError, LabelSource, is_frame, label_maps, open_labels, row_pixels, skin_tone_source
from m2fp_batch.labels.reader import is_trainable
from m2fp_batch.schema import REVIEW_STATUS, SKIN_GROUPS
from m2fp_batch.storage import Filesystems

__all__ = ["ParsingDataset", "SampleRef"]

FRAME_COLUMNS = ("video_id", "frame_index", "pts_seconds")  # null or absent for photos
INDEX_COLUMNS = ("image_id", "uri", "status", REVIEW_STATUS, "skin_tone_counts", *FRAME_COLUMNS)
LABEL_COLUMNS = ("image_id", "uri", "width", "height", "persons", "semantic")
Transform = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class SampleRef:
    """Where sample ``i`` lives: a row of a Parquet file, an id of a CIHP dir, an image of a COCO file."""

    image_id: str
    uri: str  # the photo; a job output's video frame: its video
    file: int  # index into the source's files (Parquet); -1 for a CIHP dir
    row: int  # row in that file; index into the COCO file's images; -1 for a CIHP dir
    name: str = ""  # file id in a CIHP dir
    skin_tone_counts: dict[str, int] = field(default_factory=dict)  # persons per stored group ({}: some derived)
    video_id: str | None = None  # a video frame's video (None: a photo)
    frame_index: int | None = None  # a video frame's index in its video
    pts_seconds: float | None = None  # where a job output's frame is in its video (None: the image is a file)


class ParsingDataset(torch.utils.data.Dataset):
    """The ``ok`` rows of a job output / ``export-reviewed`` dir / CIHP-layout dir (module docstring).

    Args:
        source: the directory (local path or ``s3://`` for job outputs).
        transform: called on each sample dict; its result is what ``ds[i]`` returns.
        split: which ``<split>_id.txt`` of a CIHP dir (needed when it has several).
        cache_shards: Parquet shards kept in memory per process.

    Raises:
        LabelsError: the source is not a readable job output, export-reviewed or CIHP dir or COCO file.
    """

    def __init__(
        self,
        source: str | Path,
        transform: Transform | None = None,
        *,
        split: str | None = None,
        cache_shards: int = 4,
    ) -> None:
        self.source = str(source)
        self.transform = transform
        self.cache_shards = max(1, int(cache_shards))
        self._cache: OrderedDict[int, pa.Table] = OrderedDict()
        self._derived: dict[int, list[dict[str, Any]]] = {}  # index -> its people's tones, when some were derived
        self._fss = Filesystems()
        self.labels: LabelSource | None = None
        self.coco: CocoLabels | None = None
        self.max_pixels = DEFAULT_MAX_PIXELS
        root = Path(self.source)
        if "://" not in self.source and (root / cihp.CATEGORY_DIR).is_dir():
            self.kind = "cihp"
            self._cihp_root, self.split = root, _cihp_split(root, split)
            self._meta = cihp.read_meta(root, self.split)
            self.refs = self._cihp_refs()
        elif "://" not in self.source and is_coco_file(root):
            self.kind, self.split = "coco", split
            self.coco = CocoLabels(root)
            self.refs = [
                SampleRef(str(im.get("m2fp_image_id", im["id"])), self.coco.uri(im), -1, k, **_coco_frame(im))
                for k, im in enumerate(self.coco.images)
            ]
        else:
            self.labels = open_labels(self.source)
            self.kind, self.split = self.labels.kind, split
            self.refs = self._parquet_refs(self.labels)
            settings = self.labels.job_settings() or {}
            self.max_pixels = int(settings.get("max_pixels") or DEFAULT_MAX_PIXELS)

    @staticmethod
    def _parquet_refs(labels: LabelSource) -> list[SampleRef]:
        refs = []
        for k, path in enumerate(labels.files):
            for j, row in enumerate(labels.read_file(path, INDEX_COLUMNS).to_pylist()):
                if is_trainable(row):
                    counts = dict(row.get("skin_tone_counts") or {})
                    frame = {c: row.get(c) for c in FRAME_COLUMNS} if is_frame(row) else {}
                    refs.append(SampleRef(str(row["image_id"]), str(row["uri"]), k, j, "", counts, **frame))
        return refs

    def _cihp_refs(self) -> list[SampleRef]:
        refs = []
        for name in cihp.read_ids(self._cihp_root, self.split):
            meta = self._meta.get(name, {})
            image = str(self._cihp_root / cihp.IMAGE_DIR / f"{name}.jpg")
            tones = cihp.stored_tones(meta)
            groups = [t["group"] for t in tones if skin_tone_source(t) is not None]
            counts = {g: groups.count(g) for g in SKIN_GROUPS} if tones and len(groups) == len(tones) else {}
            frame = {c: meta.get(c) for c in ("video_id", "frame_index")}
            refs.append(SampleRef(meta.get("image_id", name), image, -1, -1, name, counts, **frame))
        return refs

    def __len__(self) -> int:
        return len(self.refs)

    @property
    def image_ids(self) -> list[str]:
        """The image id of every sample, in index order."""
        return [r.image_id for r in self.refs]

    def videos(self) -> dict[str, list[int]]:
        """Video id -> the indices of its frames' samples in frame order, videos in order of first sample.
        Photos are in no group (their samples have ``video_id`` None)."""
        by_video: dict[str, list[int]] = {}
        for i, r in enumerate(self.refs):
            if r.video_id is not None:
                by_video.setdefault(r.video_id, []).append(i)
        return {v: sorted(idx, key=lambda i: (self.refs[i].frame_index or 0, i)) for v, idx in by_video.items()}

    def shard_order(self, generator: np.random.Generator | None = None) -> list[int]:
        """Every index once, shard by shard (shards and rows shuffled when ``generator`` is given)."""
        by_file: dict[int, list[int]] = {}
        for i, r in enumerate(self.refs):
            by_file.setdefault(r.file, []).append(i)
        files = list(by_file)
        if generator is not None:
            generator.shuffle(files)
            for idx in by_file.values():
                generator.shuffle(idx)
        return [i for f in files for i in by_file[f]]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cache"] = OrderedDict()  # each worker process reads its own shards
        return state

    def _table(self, file: int) -> pa.Table:
        table = self._cache.get(file)
        if table is None:
            assert self.labels is not None
            table = self.labels.read_file(self.labels.files[file], LABEL_COLUMNS)
            self._cache[file] = table
            while len(self._cache) > self.cache_shards:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(file)
        return table

    def _image(self, ref: SampleRef, shape: tuple[int, int]) -> np.ndarray:
        """The pixels of a sample (:func:`m2fp_batch.labels.row_pixels`: a job output's frame from its video)."""
        uri, image_id = ref.uri, ref.image_id
        where = {"uri": uri, "frame_index": ref.frame_index, "pts_seconds": ref.pts_seconds}
        if ref.pts_seconds is None:  # a file of its own (a photo, or a frame a CIHP / COCO export wrote)
            where["frame_index"] = None
        try:
            image = row_pixels(where, self._fss, self.max_pixels)
        except (OSError, ValueError, ImageError) as e:
            raise LabelsError(f"image {image_id!r}: cannot read {uri}: {e}") from e
        if image.shape[:2] != shape:
            raise LabelsError(
                f"image {image_id!r}: {uri} is {image.shape[1]}x{image.shape[0]} but its labels are "
                f"{shape[1]}x{shape[0]}: the file changed after the job labelled it"
            )
        # PIL's buffer is read-only; a sample is the caller's to modify (and torch warns on read-only arrays)
        return image if image.flags.writeable else image.copy()

    def _labelled(self, ref: SampleRef, semantic, humans, parts, stored: list, tracks: list) -> dict[str, Any]:
        """A sample before its skin keys: the photo, the label maps, the tones and track ids the data holds."""
        return {
            "image": self._image(ref, semantic.shape),
            "semantic": semantic.astype(np.int64),
            "humans": humans,
            "parts": parts,
            "image_id": ref.image_id,
            "video_id": ref.video_id,
            "frame_index": ref.frame_index,
            "track_ids": tracks,
            "stored_tones": stored,
        }

    def _parquet_sample(self, ref: SampleRef) -> dict[str, Any]:
        row = self._table(ref.file).slice(ref.row, 1).to_pylist()[0]
        maps = label_maps(row)
        persons = row.get("persons") or []
        tracks = [p.get("track_id") for p in persons]
        return self._labelled(
            ref, maps.semantic, maps.humans, maps.parts, [p.get("skin_tone") for p in persons], tracks
        )

    def _cihp_sample(self, ref: SampleRef) -> dict[str, Any]:
        s = cihp.read_sample(self._cihp_root, ref.name, self._meta.get(ref.name))
        return self._labelled(ref, s.semantic, s.humans, s.parts, s.stored_tones, s.track_ids)

    def _coco_sample(self, ref: SampleRef) -> dict[str, Any]:
        assert self.coco is not None
        s = self.coco.sample(self.coco.images[ref.row])
        return self._labelled(ref, s.semantic, s.humans, s.parts, s.stored_tones, s.track_ids)

    def _with_tones(self, i: int, sample: dict[str, Any]) -> dict[str, Any]:
        """The sample's skin keys (:func:`m2fp_batch.data.skin.tone_fields`), derived tones cached per index."""
        stored = sample.pop("stored_tones")
        tones = self._derived.get(i)
        if tones is None:
            tones = person_tones(sample["image"], sample["semantic"], sample["humans"], stored)
            if any(skin_tone_source(t) is None for t in stored) or len(tones) > len(stored):
                self._derived[i] = tones
        return sample | tone_fields(tones)

    def __getitem__(self, i: int) -> Any:
        if not -len(self.refs) <= i < len(self.refs):
            raise IndexError(f"index {i} out of range for {len(self.refs)} samples")
        i = i % len(self.refs)
        ref = self.refs[i]
        read = {"cihp": self._cihp_sample, "coco": self._coco_sample}.get(self.kind, self._parquet_sample)
        sample = read(ref)
        sample = self._with_tones(i, sample)
        return self.transform(sample) if self.transform is not None else sample

    def __repr__(self) -> str:
        return f"ParsingDataset({self.source!r}, kind={self.kind!r}, samples={len(self)})"


def _cihp_split(root: Path, split: str | None) -> str:
    splits = cihp.find_splits(root)
    if split is not None:
        if split not in splits:
            raise LabelsError(f"{root} has no {cihp.ids_file(split)} (splits there: {splits})")
        return split
    if len(splits) != 1:
        raise LabelsError(
            f"{root} is a CIHP-layout dir with {len(splits)} splits {splits}: pass split=NAME"
            if splits
            else f"{root} has {cihp.CATEGORY_DIR}/ but no <split>_id.txt: not a CIHP-layout dir"
        )
    return splits[0]


def _coco_frame(image: dict[str, Any]) -> dict[str, Any]:
    """``video_id`` and ``frame_index`` of a COCO ``images`` entry of a video frame (``export --format coco``)."""
    if image.get("video_id") is None:
        return {}
    return {"video_id": str(image["video_id"]), "frame_index": image.get("frame_index")}
