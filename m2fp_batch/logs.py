"""The one logging set-up, once per process: the CLI calls it, and so does each Ray Train worker."""

from __future__ import annotations

import logging

__all__ = ["LOG_FORMAT", "configure_logging"]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(verbose: bool = False) -> None:
    """Our own loggers (``m2fp_batch.*``) speak at INFO, other libraries only from WARNING (a
    fresh HOME's matplotlib font cache is not news); ``verbose`` turns everything to DEBUG."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format=LOG_FORMAT)
    logging.getLogger("m2fp_batch").setLevel(logging.DEBUG if verbose else logging.INFO)
