"""Training data from the job's labels: :class:`ParsingDataset` (PyTorch) and :func:`ray_dataset` (Ray)."""

from m2fp_batch.data.dataset import ParsingDataset, SampleRef
from m2fp_batch.data.ray_data import ray_dataset

__all__ = ["ParsingDataset", "SampleRef", "ray_dataset"]
