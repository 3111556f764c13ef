"""The M2FP network in pure PyTorch: imports torch and nothing else of this project.

Module and parameter names follow the official ModelScope implementation so that the
official checkpoint loads without renaming (see :func:`checkpoint.remap_state_dict`).
"""

from m2fp_batch.model.build import M2FPConfig, build_m2fp
from m2fp_batch.model.m2fp import M2FP

__all__ = ["M2FP", "M2FPConfig", "build_m2fp"]
