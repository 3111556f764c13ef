import numpy as np
import pytest
import torch

from m2fp_batch.inference import preprocess
from m2fp_batch.resize import target_size


@pytest.mark.parametrize(
    "hw,expected",
    [
        ((512, 512), (640, 640)),
        ((600, 512), (750, 640)),
        ((1536, 1800), (640, 750)),
        ((100, 1000), (133, 1333)),
        ((3000, 4000), (640, 853)),
    ],
)
def test_official_target_size(hw, expected):
    assert target_size(*hw) == expected


def test_batch_is_normalised_then_zero_padded():
    img = np.full((33, 40, 3), 200, np.uint8)
    mean = torch.tensor([123.675, 116.28, 103.53]).view(-1, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(-1, 1, 1)
    b = preprocess.to_batch([img], mean, std, 32)
    assert b.shape == (1, 3, 64, 64)
    torch.testing.assert_close(b[0, :, 0, 0], ((200 - mean) / std).flatten())
    assert (b[0, :, 33:, :] == 0).all() and (b[0, :, :, 40:] == 0).all()
