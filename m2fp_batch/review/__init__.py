"""FiftyOne review of a job's labels: build the dataset, launch the App, export the fixes.

This package is the only place that imports FiftyOne, always through :mod:`.fo` (which sets the
project's FiftyOne defaults first); importing the package itself has no side effect. The pure
parts (:mod:`.priority`, :mod:`.masks`, :mod:`.convert`) import no FiftyOne. The layout the
export writes is :mod:`m2fp_batch.reviewed`'s.
"""
