"""Launch the FiftyOne App on a review dataset, bound to 127.0.0.1."""

from __future__ import annotations

import logging
import os
from urllib.parse import urlsplit

from m2fp_batch.review.fo import fo
from m2fp_batch.review.masks import ReviewInputError

log = logging.getLogger(__name__)

ADDRESS = "127.0.0.1"
DEFAULT_PORT = 5151


def database_description() -> str:
    """Which MongoDB FiftyOne uses, without credentials: ``bundled (dir)`` or ``external (host:port)``."""
    uri = os.environ.get("FIFTYONE_DATABASE_URI") or fo.config.database_uri
    if uri:
        parts = urlsplit(uri)
        return f"external MongoDB ({parts.hostname}:{parts.port or 27017})"
    return f"bundled MongoDB ({fo.config.database_dir})"


def launch(name: str, port: int = DEFAULT_PORT, view: str | None = None) -> fo.Session:
    """Open the App server for dataset ``name`` (optionally a saved view) on 127.0.0.1:``port``.

    Raises:
        ReviewInputError: no dataset of that name, or no saved view of that name.
    """
    if not fo.dataset_exists(name):
        raise ReviewInputError(
            f"no FiftyOne dataset named {name!r}: build it with `m2fp-batch review DIR --dataset {name}`"
        )
    ds = fo.load_dataset(name)
    target = ds
    if view:
        if view not in ds.list_saved_views():
            raise ReviewInputError(f"dataset {name!r} has no saved view {view!r} (views: {ds.list_saved_views()})")
        target = ds.load_saved_view(view)
    session = fo.launch_app(target, remote=True, address=ADDRESS, port=port)
    log.info("FiftyOne App for %r on http://%s:%d (%s)", name, ADDRESS, port, database_description())
    return session
