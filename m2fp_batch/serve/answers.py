"""What ``POST /api/parse`` answers, built from the job's row: plain Python, no Ray, no HTTP server."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from m2fp_batch.annotate.palette import PALETTE
from m2fp_batch.photo_to_row import PROVENANCE_COLUMNS

FORMATS = ("json", "image", "overlay", "people")
# format -> the annotate.render kind it returns
FORMAT_RENDER = {"image": "parse", "overlay": "overlay", "people": "people"}
# the ML backend's own answers from a replica (not formats of /api/parse): a Label Studio prediction, the job's row
FORMAT_LS_PREDICTION = "ls-prediction"
FORMAT_LS_ROW = "ls-row"

# The job's error kinds (schema.ERROR_KINDS) plus the service's own, each with its HTTP status.
SERVICE_ERROR_KINDS = {
    "invalid_request": "the request is malformed (no multipart form, an unknown format, alpha outside 0..1)",
    "body_too_large": "the request body is larger than the configured limit",
    "overloaded": "every queue slot is taken: retry after the Retry-After seconds",
    "unavailable": "no model replica can take the request right now: retry after the Retry-After seconds",
    "not_found": "no such path or result (results are kept in a bounded cache)",
    "unauthorized": "ML backend: wrong or missing credentials (basic auth, or Label Studio refused its token)",
    "forbidden": "ML backend: a photo URL outside the connected Label Studio (serve --allow-fetch allows it)",
    "invalid_config": "ML backend: the project's labelling config is not M2FP's 20 classes",
}
HTTP_STATUS = {
    "missing": 400,
    "empty": 400,
    "not_an_image": 415,
    "unsupported_mode": 415,
    "truncated": 422,
    "corrupt": 422,
    "too_small": 422,
    "too_large": 413,
    "inference_error": 422,
    "invalid_request": 400,
    "body_too_large": 413,
    "overloaded": 503,
    "unavailable": 503,
    "not_found": 404,
    "unauthorized": 401,
    "forbidden": 403,
    "invalid_config": 422,
}


@dataclass
class Reply:
    """A replica's answer to one parse request.

    Attributes:
        status: HTTP status.
        body: the JSON body (format json, or any error), or None.
        png: the PNG (formats image, overlay, people), or None.
        stash: PNGs the front end keeps under ``/results/<id>...`` ({suffix: bytes}) for a json answer.
        inference_time: engine seconds for this image (preprocess + forward + postprocess).
    """

    status: int
    body: dict[str, Any] | None = None
    png: bytes | None = None
    stash: dict[str, bytes] = field(default_factory=dict)
    inference_time: float | None = None


def error_body(kind: str, message: str) -> dict[str, Any]:
    return {"success": False, "error_kind": kind, "error": message}


def error_reply(kind: str, message: str) -> Reply:
    return Reply(HTTP_STATUS.get(kind, 400), error_body(kind, message))


def parse_options(fmt: str | None, alpha: str | float | None) -> tuple[str, float]:
    """Validate ``format`` and ``alpha``; raise ValueError with a sentence for people."""
    fmt = (fmt or "json").strip().lower()
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    try:
        a = 0.5 if alpha in (None, "") else float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"alpha must be a number within [0, 1]; got {alpha!r}") from None
    if not 0.0 <= a <= 1.0:
        raise ValueError(f"alpha must be within [0, 1]; got {a}")
    return fmt, a


def parse_json(row: dict[str, Any], class_scores: dict[int, float], inference_time: float) -> dict[str, Any]:
    """The ``format=json`` answer from the job's ``ok`` row (``m2fp_batch.rows``) for the image.

    ``masks`` are the row's ``semantic`` entries with their palette ``color`` and ``confidence`` (mean
    semantic probability); ``persons`` are the row's persons unchanged.
    """
    masks = [
        {
            "label_id": s["label_id"],
            "label": s["label"],
            "color": [int(v) for v in PALETTE[s["label_id"]]],
            "confidence": class_scores[s["label_id"]],
            "area": s["area"],
            "rle": s["mask"],
        }
        for s in row["semantic"]
    ]
    keep = ("image_id", "width", "height", "num_persons", "persons", "skin_tone_groups", "skin_tone_counts")
    return {
        "success": True,
        "schema_version": row["schema_version"],
        **{k: row[k] for k in keep},
        "brightened": row["brightened"],
        "brightness_factor": row["brightness_factor"],
        "masks": masks,
        "result_url": None,  # set by the front end, which keeps the PNG
        "inference_time": inference_time,
        "timings": row["timings"],
        "model": {k: row[k] for k in PROVENANCE_COLUMNS},
    }
