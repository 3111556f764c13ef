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
