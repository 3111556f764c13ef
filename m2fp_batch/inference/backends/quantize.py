"""int8: ONNX Runtime static quantisation of the exported graph, calibrated on the user's photos.

Only the convolutions and matrix products are quantised (QDQ, per-channel int8 weights,
uint8 activations from min/max calibration): they carry almost all of the FLOPs, while the
deformable sampling, softmaxes and normalisations stay float32, where int8 would move the
sampling positions and the attention masks' thresholds.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import torch

from m2fp_batch.inference.backends.graph import INPUT_NAME, ExportError

log = logging.getLogger(__name__)

__all__ = ["QUANTISED_OPS", "quantize_int8"]

QUANTISED_OPS = ["Conv", "MatMul", "Gemm"]


class _Batches:
    """onnxruntime's CalibrationDataReader over preprocessed batches."""

    def __init__(self, batches: list[torch.Tensor]) -> None:
        self._it = iter(batches)

    def get_next(self) -> dict | None:
        batch = next(self._it, None)
        return None if batch is None else {INPUT_NAME: batch.numpy()}


def quantize_int8(onnx_path: Path, calibration: list[torch.Tensor]) -> None:
    """Replace ``onnx_path`` by its int8 (QDQ) version calibrated on ``calibration``."""
    try:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    except ImportError as e:
        raise ExportError("int8 needs 'onnxruntime': pip install 'm2fp-batch[engines]'") from e
    log.info("int8: calibrating on %d photo(s)", len(calibration))
    with tempfile.TemporaryDirectory(prefix="m2fp-int8-") as tmp:
        out = Path(tmp) / "int8.onnx"
        quantize_static(
            str(onnx_path),
            str(out),
            _Batches(calibration),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=QUANTISED_OPS,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"CalibTensorRangeSymmetric": False},
        )
        out.replace(onnx_path)
