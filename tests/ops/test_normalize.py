"""unit_normalize: F.normalize over channels, value and gradient, in every memory layout."""

import pytest
import torch
import torch.nn.functional as F

from dsc.ops.normalize import unit_normalize


@pytest.mark.parametrize("layout", ["nchw", "channel_slice", "channels_last"])
def test_value_and_gradient_equal_f_normalize(layout):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 7, 5, 6, generator=generator, dtype=torch.float64)
    x[0, :, 1, 1] = 0.0  # a zero vector: below F.normalize's ε
    if layout == "channel_slice":
        x = x[:, 1:6]
    elif layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    weights = torch.randn(x.shape, generator=generator, dtype=torch.float64)
    ours, theirs = x.detach().clone().requires_grad_(), x.detach().clone().requires_grad_()
    expected, result = F.normalize(theirs, dim=1), unit_normalize(ours)
    torch.testing.assert_close(result, expected)
    (result * weights).sum().backward()
    (expected * weights).sum().backward()
    torch.testing.assert_close(ours.grad, theirs.grad)
    assert torch.all(result[0, :, 1, 1] == 0)


def test_a_broadcast_gradient_is_read_as_it_is():
    # .sum() sends back a gradient of stride 0 in every dimension.
    x = torch.randn(2, 4, 3, 5, dtype=torch.float64)
    ours, theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    unit_normalize(ours).sum().backward()
    F.normalize(theirs, dim=1).sum().backward()
    torch.testing.assert_close(ours.grad, theirs.grad)
