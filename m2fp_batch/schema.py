"""The job's output schema, defined once (pyarrow only).

One Parquet row per input image. ``schemas/labels_v<N>.json`` and ``schemas/labels_v<N>.md`` are
generated from this module (``python -m m2fp_batch.schema --write schemas``) and a test keeps them
in sync. Manifest passthrough columns are appended after these columns, with their own types.

Every mask is a COCO RLE struct ``{size: [H, W], counts: str}`` (pycocotools' compressed string,
stored as UTF-8 text): ``pycocotools.mask.decode({"size": size, "counts": counts.encode()})``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pyarrow as pa

SCHEMA_VERSION = (
    5  # 5: video frames and person tracks; 4: device; 3: skin_tone.hue and skin_tone.source; 2: skin_tone, brightness
)
SCHEMA_NAME = f"labels_v{SCHEMA_VERSION}"

STATUS_OK = "ok"
STATUS_ERROR = "error"
STATUSES = (STATUS_OK, STATUS_ERROR)

# The reviewed layout (m2fp_batch.reviewed) adds the column REVIEW_STATUS with one of these verdicts;
# every reader leaves REJECTED rows out of training and exports. The words are the review tools' too
# (FiftyOne tags, Label Studio's verdict choice).
REVIEW_STATUS = "review_status"
REVIEWED = "reviewed"  # a reviewer accepted (possibly edited) the labels
REJECTED = "rejected"  # a reviewer refused the labels
UNREVIEWED = "unreviewed"  # in the review tool, no verdict yet: the job's labels
NOT_IN_DATASET = "not_in_dataset"  # never sent to the review tool: the job's labels
REVIEW_STATUSES = (REVIEWED, REJECTED, UNREVIEWED, NOT_IN_DATASET)

# error_kind values (the error histogram of _run.json counts these)
ERROR_KINDS = {
    "missing": "the file or object does not exist",
    "bad_name": "the file name is not valid UTF-8 (the uri keeps it with its bytes escaped as \\xNN, backslashes doubled)",
    "unreadable": "the file exists but could not be read (permissions, I/O, network; not a regular file)",
    "empty": "the file has zero bytes",
    "not_an_image": "the bytes are not an image format PIL can identify",
    "truncated": "the image data ends early",
    "corrupt": "the image header, data or EXIF metadata is corrupt",
    "too_large": "more pixels (max_pixels) or bytes (max_bytes) than the configured limits",
    "too_small": "an image side is below the configured minimum",
    "unsupported_mode": "a pixel mode that cannot be converted to RGB",
    "worker_crash": "the image crashed the worker process repeatedly",
    "inference_error": "the model failed on this image",
    "video_error": "the video is damaged or ends early: the frames before the damage are rows, this row gives the position",
    "not_a_video": "a video container FFmpeg cannot open, or one without a decodable video stream",
}


def _f(name: str, type_: pa.DataType, doc: str, nullable: bool = True) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={"doc": doc})


RLE = pa.struct(
    [
        _f("size", pa.list_(pa.int32()), "[H, W] of the image", nullable=False),
        _f("counts", pa.string(), "COCO compressed RLE counts (pycocotools string, UTF-8)", nullable=False),
    ]
)
BBOX = pa.list_(pa.int32())
_BBOX_DOC = "[x0, y0, x1, y1] in pixels, end-exclusive"

PART = pa.struct(
    [
        _f("label_id", pa.int32(), "class id (index into the model's class names)", nullable=False),
        _f("label", pa.string(), "class name (CIHP)", nullable=False),
        _f("area", pa.int64(), "pixels of this part of the person", nullable=False),
        _f("fraction", pa.float32(), "area / the person's area", nullable=False),
        _f("bbox", BBOX, _BBOX_DOC, nullable=False),
        _f("score", pa.float32(), "mean per-pixel semantic probability over the part"),
        _f("mask", RLE, "the part's pixels (COCO RLE, full image size)", nullable=False),
    ]
)

SKIN_GROUPS = ("light", "medium", "dark", "unknown")
# How a person's skin tone was obtained (skin_tone.source, schema v3+; v2 tones were all measured).
SKIN_SOURCES = ("measured", "derived", "reviewed")

SKIN_TONE = pa.struct(
    [
        _f("lab", pa.list_(pa.float32()), "median CIELAB [L*, a*, b*] of the kept skin pixels (null when unknown)"),
        _f("ita", pa.float32(), "Individual Typology Angle atan2(L* - 50, b*) in degrees (null when unknown)"),
        _f("ita_category", pa.string(), "very light, light, intermediate, tan, brown, dark or unknown", nullable=False),
        _f(
            "group",
            pa.string(),
            "light (ITA > 41), medium (10 < ITA <= 41), dark (ITA <= 10) or unknown",
            nullable=False,
        ),
        _f("monk", pa.int32(), "nearest Monk Skin Tone 1..10 (null when unknown)"),
        _f("pixels", pa.int64(), "skin pixels the estimate used (after erosion and trimming)", nullable=False),
        _f(
            "confidence",
            pa.float32(),
            "0..1, agreement of the pixels with the group times a pixel-count factor",
            nullable=False,
        ),
        _f("hue", pa.float32(), "CIELAB hue angle h* = atan2(b*, a*) of lab in degrees [0, 360) (null when unknown)"),
        _f(
            "source",
            pa.string(),
            "how the tone was obtained: " + ", ".join(SKIN_SOURCES) + " (null: not measured, e.g. a person a "
            "reviewer added; readers derive it from the labels)",
        ),
    ]
)

TRACK_SKIN_TONE = pa.struct(
    [
        _f("ita", pa.float32(), "median ITA of the track's frames with a known tone (null when none)"),
        _f("ita_spread", pa.float32(), "interquartile range of those ITAs in degrees (null when none)"),
        _f("group", pa.string(), "skin-tone group of the median ITA (unknown when none)", nullable=False),
        _f("frames", pa.int32(), "frames of the track with a known tone", nullable=False),
    ]
)

SKIN_COUNTS = pa.struct(
    [_f(g, pa.int32(), f"persons whose skin-tone group is {g}", nullable=False) for g in SKIN_GROUPS]
)

PERSON = pa.struct(
    [
        _f("person_id", pa.int32(), "0-based index of the person in this image", nullable=False),
        _f("score", pa.float32(), "human instance score", nullable=False),
        _f("bbox", BBOX, _BBOX_DOC, nullable=False),
        _f("area", pa.int64(), "pixels of the person", nullable=False),
        _f("mask", RLE, "the person's pixels (COCO RLE, full image size)", nullable=False),
        _f("parts", pa.list_(PART), "one entry per part class present in the person, by label_id", nullable=False),
        _f(
            "skin_tone",
            SKIN_TONE,
            "skin tone from the ORIGINAL pixels of the person's skin parts (Face, arms, legs, Torso-skin)",
            nullable=False,
        ),
        _f("track_id", pa.int32(), "the person's identity within a video, stable across its frames (null: a photo)"),
        _f("track_skin_tone", TRACK_SKIN_TONE, "one skin tone for the whole track, over its frames (null: a photo)"),
    ]
)

SEMANTIC_CLASS = pa.struct(
    [
        _f("label_id", pa.int32(), "class id", nullable=False),
        _f("label", pa.string(), "class name", nullable=False),
        _f("area", pa.int64(), "pixels of this class in the image", nullable=False),
        _f("mask", RLE, "the class's pixels in the semantic map (COCO RLE)", nullable=False),
    ]
)

TIMINGS = pa.struct(
    [
        _f("read_s", pa.float32(), "reading the bytes"),
        _f("decode_s", pa.float32(), "decoding to RGB"),
        _f("preprocess_s", pa.float32(), "resize and normalise"),
        _f("forward_s", pa.float32(), "network forward (a batch's time divided by its size)"),
        _f("postprocess_s", pa.float32(), "masks, instances, persons"),
        _f("encode_s", pa.float32(), "part statistics and RLE encoding"),
    ]
)

FIELDS: list[pa.Field] = [
    _f("schema_version", pa.int32(), "version of this schema", nullable=False),
    _f("image_id", pa.string(), "the manifest's image_id, or sha1 of the uri (first 20 hex digits)", nullable=False),
    _f("uri", pa.string(), "where the image was read from (local path or s3://bucket/key)", nullable=False),
    _f("shard", pa.int32(), "output shard the row belongs to", nullable=False),
    _f("width", pa.int32(), "image width after EXIF orientation (null when not decoded)"),
    _f("height", pa.int32(), "image height after EXIF orientation (null when not decoded)"),
    _f("status", pa.string(), "'ok' or 'error'", nullable=False),
    _f("error", pa.string(), "what went wrong, for people (null when ok)"),
    _f("error_kind", pa.string(), "machine-readable error class: " + ", ".join(ERROR_KINDS) + " (null when ok)"),
    _f("num_persons", pa.int32(), "number of persons found (null when error)"),
    _f("persons", pa.list_(PERSON), "people found, in the model's order (null when error)"),
    _f("semantic", pa.list_(SEMANTIC_CLASS), "semantic map, one entry per class present except background"),
    _f("skin_tone_groups", pa.list_(pa.string()), "skin-tone groups present among the persons (known ones, sorted)"),
    _f("skin_tone_counts", SKIN_COUNTS, "number of persons per skin-tone group (null when error)"),
    _f("brightened", pa.bool_(), "the model input was brightened (adaptive_brightness; null when not decoded)"),
    _f("brightness_factor", pa.float32(), "factor applied to the HSV value of the model input (1.0: none)"),
    _f("model", pa.string(), "the model argument of the job (dir or ModelScope id)", nullable=False),
    _f("model_id", pa.string(), "ModelScope id, when loaded from the hub"),
    _f("model_revision", pa.string(), "ModelScope revision, when known"),
    _f("checkpoint_sha256", pa.string(), "sha256 of the checkpoint file", nullable=False),
    _f("package_version", pa.string(), "m2fp-batch version that wrote the row", nullable=False),
    _f(
        "config_hash",
        pa.string(),
        "sha256 (first 16 hex digits) of the settings that change labels (model, revision, engine, short_edge, "
        "max_size, adaptive_brightness, precision): equal in job rows and /api/parse answers of the same settings",
        nullable=False,
    ),
    _f(
        "device",
        pa.string(),
        "where the network ran (cpu, cuda:0, ...); not in config_hash: fp32 on CUDA passes the CPU's parity check "
        "(null before labels_v4)",
    ),
    _f("timings", TIMINGS, "seconds per stage for this image"),
    _f("video_id", pa.string(), "the video's image_id when the row is a sampled frame (image_id: <video_id>#f<frame>)"),
    _f(
        "frame_index",
        pa.int32(),
        "the frame's index among the video's decoded frames (null: a photo or the video's error row)",
    ),
    _f("pts_seconds", pa.float64(), "the frame's presentation time in seconds (an error row: where decoding stopped)"),
    _f("video_fps", pa.float32(), "the video's average frame rate (null when unknown)"),
    _f("video_width", pa.int32(), "the video's coded frame width, before rotation metadata"),
    _f("video_height", pa.int32(), "the video's coded frame height, before rotation metadata"),
    _f("video_duration_s", pa.float64(), "the video's stated duration in seconds (null when unknown)"),
]

# the columns a sampled frame's row carries from the read stage (null on a photo's row)
VIDEO_COLUMNS = (
    "video_id",
    "frame_index",
    "pts_seconds",
    "video_fps",
    "video_width",
    "video_height",
    "video_duration_s",
)

SCHEMA = pa.schema(FIELDS, metadata={"m2fp_batch.schema": SCHEMA_NAME})
COLUMN_NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)


def output_schema(passthrough: pa.Schema | None = None) -> pa.Schema:
    """The schema of the job's Parquet files: :data:`SCHEMA` plus manifest passthrough columns.

    Raises:
        ValueError: a passthrough column has the name of an output column.
    """
    if passthrough is None or len(passthrough) == 0:
        return SCHEMA
    clash = [n for n in passthrough.names if n in COLUMN_NAMES]
    if clash:
        raise ValueError(f"manifest column(s) {clash} collide with output columns; rename them in the manifest")
    fields = list(SCHEMA) + [
        pa.field(f.name, f.type, nullable=True, metadata={"doc": "passthrough"}) for f in passthrough
    ]
    return pa.schema(fields, metadata=SCHEMA.metadata)


def _type_json(t: pa.DataType) -> dict | str:
    if pa.types.is_struct(t):
        return {"struct": [field_json(t.field(i)) for i in range(t.num_fields)]}
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return {"list": _type_json(t.value_type)}
    return str(t)


def field_json(f: pa.Field) -> dict:
    doc = (f.metadata or {}).get(b"doc", b"").decode()
    return {"name": f.name, "type": _type_json(f.type), "nullable": f.nullable, "doc": doc}


def schema_json() -> dict:
    """The schema as plain JSON (what ``schemas/labels_vN.json`` holds)."""
    return {
        "name": SCHEMA_NAME,
        "version": SCHEMA_VERSION,
        "mask_encoding": "COCO RLE {size: [H, W], counts: str} (pycocotools compressed string, UTF-8)",
        "statuses": list(STATUSES),
        "error_kinds": ERROR_KINDS,
        "fields": [field_json(f) for f in SCHEMA],
    }


def _md_rows(f: pa.Field, prefix: str, out: list[str]) -> None:
    t = f.type
    name = prefix + f.name
    doc = (f.metadata or {}).get(b"doc", b"").decode().replace("|", "\\|")
    shown = t
    inner = None
    if pa.types.is_list(t) and pa.types.is_struct(t.value_type):
        shown, inner, name_sfx = "list<struct>", t.value_type, "[]."
    elif pa.types.is_struct(t) and t is not RLE and t != RLE:
        shown, inner, name_sfx = "struct", t, "."
    elif t == RLE:
        shown = "rle"
    elif pa.types.is_list(t):
        shown = f"list<{t.value_type}>"
    out.append(f"| `{name}` | {shown} | {'yes' if f.nullable else 'no'} | {doc} |")
    if inner is not None:
        for i in range(inner.num_fields):
            _md_rows(inner.field(i), name + name_sfx, out)


def schema_markdown() -> str:
    """A human description of the schema (what ``schemas/labels_vN.md`` holds)."""
    lines = [
        f"# Output schema `{SCHEMA_NAME}` (generated by `python -m m2fp_batch.schema --write schemas`)",
        "",
        "One Parquet row per input image, `status` `ok` or `error`; manifest columns other than `uri` and",
        "`image_id` follow these columns unchanged. Do not edit: change `m2fp_batch/schema.py` and regenerate.",
        "",
        "`rle` = struct `{size: list<int32> [H, W], counts: string}`: a COCO RLE as pycocotools writes it;",
        "decode with `pycocotools.mask.decode({'size': size, 'counts': counts.encode()})`.",
        "",
        "| column | type | nullable | meaning |",
        "|---|---|---|---|",
    ]
    for f in SCHEMA:
        _md_rows(f, "", lines)
    lines += ["", "## error_kind", "", "| kind | meaning |", "|---|---|"]
    lines += [f"| `{k}` | {v} |" for k, v in ERROR_KINDS.items()]
    return "\n".join(lines) + "\n"


def generated_files() -> dict[str, str]:
    """File name -> content of everything ``schemas/`` must hold for this version."""
    return {
        f"{SCHEMA_NAME}.json": json.dumps(schema_json(), indent=2) + "\n",
        f"{SCHEMA_NAME}.md": schema_markdown(),
    }


def write(directory: str | Path) -> list[Path]:
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in generated_files().items():
        (out / name).write_text(text)
        written.append(out / name)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m m2fp_batch.schema", description="print or write the output schema files"
    )
    p.add_argument("--write", metavar="DIR", help="write schemas/labels_vN.{json,md} into DIR")
    args = p.parse_args(argv)
    if args.write:
        for path in write(args.write):
            print(path)
    else:
        sys.stdout.write(generated_files()[f"{SCHEMA_NAME}.json"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
