"""FiftyOne review of a job's labels: build the dataset, launch the App, export the fixes.

This package is the only place that imports FiftyOne. Importing it sets the FiftyOne defaults
the project relies on (no usage tracking, no MongoDB version warning) unless the environment
already sets them; ``FIFTYONE_DATABASE_DIR`` / ``FIFTYONE_DATABASE_URI`` choose the database.
The pure parts (:mod:`.priority`, :mod:`.masks`) import no FiftyOne.
"""

from __future__ import annotations

import os

os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")

# On a loaded 2-core machine the bundled mongod can take longer than pymongo's default 30 s
# server-selection timeout to answer its first client ("Could not connect to `mongod`").
MONGOD_CONNECT_TIMEOUT_S = 180


def connect_patiently() -> None:
    """Give FiftyOne's first database connection :data:`MONGOD_CONNECT_TIMEOUT_S` (call before it connects)."""
    import fiftyone.core.odm.database as fod

    fod._connection_kwargs.setdefault("serverSelectionTimeoutMS", MONGOD_CONNECT_TIMEOUT_S * 1000)
