"""Skin-tone / fairness report of a job output (reads the Parquet; matplotlib plots)."""

from m2fp_batch.report.build import Report, build_report
from m2fp_batch.report.data import ReportError, load_output

__all__ = ["Report", "ReportError", "build_report", "load_output"]
