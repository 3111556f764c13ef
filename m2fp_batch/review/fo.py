"""FiftyOne, imported with the project's defaults: every module of this package imports it from here.

Unless the environment already sets them: ``FIFTYONE_DO_NOT_TRACK=true`` (no usage tracking) and
``FIFTYONE_DATABASE_VALIDATION=false`` (no MongoDB version warning); ``FIFTYONE_DATABASE_DIR`` /
``FIFTYONE_DATABASE_URI`` choose the database. The first database connection waits up to
:data:`MONGOD_CONNECT_TIMEOUT_S`: on a loaded 2-core machine the bundled mongod can take longer
than pymongo's default 30 s to answer its first client ("Could not connect to `mongod`").
"""

from __future__ import annotations

import os

os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")

import fiftyone as fo  # noqa: E402  (after the defaults above: FiftyOne reads them on import)
import fiftyone.core.odm.database as fod  # noqa: E402

__all__ = ["MONGOD_CONNECT_TIMEOUT_S", "fo"]

MONGOD_CONNECT_TIMEOUT_S = 180
fod._connection_kwargs.setdefault("serverSelectionTimeoutMS", MONGOD_CONNECT_TIMEOUT_S * 1000)
