"""The fast deformable-attention core against the grid_sample reference."""

import pytest
import torch

from m2fp_batch.model.ms_deform_attn import MSDeformAttn, ms_deform_attn_sample, ms_deform_attn_sample_naive


def _inputs(n, shapes, m=4, d=8, p=3, seed=0, spread=0.2):
    g = torch.Generator().manual_seed(seed)
    s = sum(h * w for h, w in shapes)
    value = torch.randn(n, s, m, d, generator=g)
    # locations partly outside [0, 1]: the zero padding must match too
    loc = torch.rand(n, 7, m, len(shapes), p, 2, generator=g) * (1 + 2 * spread) - spread
    w = torch.softmax(torch.randn(n, 7, m, len(shapes) * p, generator=g), -1).view(n, 7, m, len(shapes), p)
    return value, loc, w


@pytest.mark.parametrize(
    "n,shapes",
    [(1, [(5, 7)]), (2, [(4, 4), (8, 6), (16, 11)]), (3, [(1, 1), (2, 3)]), (1, [(20, 20), (40, 40), (80, 80)])],
)
def test_fast_core_matches_grid_sample(n, shapes):
    value, loc, w = _inputs(n, shapes)
    fast = ms_deform_attn_sample(value, shapes, loc, w)
    naive = ms_deform_attn_sample_naive(value, shapes, loc, w)
    assert fast.shape == naive.shape == (n, 7, value.shape[2] * value.shape[3])
    torch.testing.assert_close(fast, naive, rtol=1e-5, atol=1e-5)


def test_exact_pixel_centres_and_far_outside():
    shapes = [(3, 4)]
    value = torch.arange(12 * 2, dtype=torch.float32).view(1, 12, 1, 2)
    # x, y at pixel centres (index + 0.5) / size, then points far outside the map
    loc = torch.tensor([[[[[[0.5 / 4, 0.5 / 3], [3.5 / 4, 2.5 / 3], [5.0, 5.0], [-3.0, 0.5]]]]]])
    w = torch.full((1, 1, 1, 1, 4), 0.25)
    fast = ms_deform_attn_sample(value, shapes, loc, w)
    naive = ms_deform_attn_sample_naive(value, shapes, loc, w)
    torch.testing.assert_close(fast, naive)
    # pixel (0, 0) -> values (0, 1); pixel (2, 3) -> row 11 -> values (22, 23); outside -> 0
    torch.testing.assert_close(fast, torch.tensor([[[0.25 * (0 + 22), 0.25 * (1 + 23)]]]))


def test_module_paths_agree():
    torch.manual_seed(0)
    shapes = [(3, 5), (6, 10)]
    attn = MSDeformAttn(d_model=16, n_levels=2, n_heads=4, n_points=2)
    torch.nn.init.normal_(attn.sampling_offsets.weight, std=0.5)
    s = sum(h * w for h, w in shapes)
    x = torch.randn(2, s, 16)
    ref = torch.rand(2, s, 2, 2)
    fast = attn(x, ref, x, shapes)
    attn.naive = True
    torch.testing.assert_close(fast, attn(x, ref, x, shapes), rtol=1e-5, atol=1e-5)


def test_training_and_inference_paths_give_the_same_values():
    """Without autograd the corner weights are written in place; with it, stacked: same numbers,
    and gradients reach the values, the locations and the attention weights."""
    value, loc, w = _inputs(2, [(4, 4), (8, 6)])
    with torch.no_grad():
        inference = ms_deform_attn_sample(value, [(4, 4), (8, 6)], loc, w)
    value.requires_grad_(True)
    w.requires_grad_(True)
    training = ms_deform_attn_sample(value, [(4, 4), (8, 6)], loc, w)
    assert torch.equal(training.detach(), inference)
    training.sum().backward()
    assert value.grad.abs().sum() > 0 and w.grad.abs().sum() > 0


@pytest.mark.gpu
def test_fast_core_on_cuda_matches_the_cpu():
    """The same sampling on a CUDA device (where the training and a GPU job run it) as on the CPU."""
    shapes = [(4, 4), (8, 6), (16, 11)]
    value, loc, w = _inputs(2, shapes)
    cpu = ms_deform_attn_sample(value, shapes, loc, w)
    cuda = ms_deform_attn_sample(value.cuda(), shapes, loc.cuda(), w.cuda())
    assert cuda.device.type == "cuda"
    torch.testing.assert_close(cuda.cpu(), cpu, rtol=1e-4, atol=1e-4)
