"""The M2FP network in pure PyTorch: imports torch and, of this project, only ``m2fp_batch.errors``
(the two user errors of a model that cannot be built or loaded).

Module and parameter names follow the official ModelScope implementation so that the
official checkpoint loads without renaming (see :func:`checkpoint.remap_state_dict`).
"""

from m2fp_batch.model.build import M2FPConfig, build_m2fp
from m2fp_batch.model.m2fp import M2FP

__all__ = ["M2FP", "M2FPConfig", "build_m2fp"]
