"""The CPU path of the exact loss from raw outputs: the plain loss's value and gradient."""

import pytest
import torch
import torch.nn.functional as F

from dsc.losses import rows_in_cache, spectral_loss
from dsc.losses.rows_in_cache import exact_frobenius_from_raw


def plain(outputs, labels):
    return spectral_loss(F.normalize(outputs, dim=1), labels, 255)


def random_case(batch, dim, height, width, instances, seed=0):
    generator = torch.Generator().manual_seed(seed)
    outputs = torch.randn(batch, dim, height, width, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, instances, (batch, height, width), generator=generator)
    labels[:, 0, :3] = 255  # void pixels
    labels[0] = labels[0] * 7 + 1000  # ids need not be small or consecutive
    return outputs, labels


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("chunk", [5, 1 << 15])
def test_value_and_gradient_match_the_plain_loss(channels_last, chunk, monkeypatch):
    monkeypatch.setattr(rows_in_cache, "CHUNK_PIXELS", chunk)  # several chunks per image, and one
    outputs, labels = random_case(3, 6, 7, 9, 4)
    outputs[1, :, 2, 3] = 0.0  # a zero vector: F.normalize's ε branch
    outputs[2, :, 4, 4] = 1e-14
    outputs = outputs.float()
    if channels_last:
        outputs = outputs.contiguous(memory_format=torch.channels_last)
    x_plain = outputs.detach().clone().requires_grad_()
    x_rows = outputs.detach().clone().requires_grad_()
    expected = plain(x_plain, labels)
    result = exact_frobenius_from_raw(x_rows, labels)
    torch.testing.assert_close(result, expected, rtol=1e-5, atol=1e-6)
    weight = torch.randn(())
    (weight * expected).backward()
    (weight * result).backward()
    torch.testing.assert_close(x_rows.grad, x_plain.grad, rtol=1e-4, atol=1e-6)
    assert x_rows.grad.stride() == x_rows.stride()  # the gradient keeps the memory format
    assert torch.equal(x_rows.detach(), outputs)  # the outputs themselves are left as they were


def test_gradient_is_the_derivative_in_float64():
    outputs, labels = random_case(2, 3, 4, 5, 3, seed=1)
    outputs = outputs.requires_grad_()

    def loss(x):  # computed in float32; the reference in float64, itself checked by gradcheck
        return exact_frobenius_from_raw(x, labels).double()

    analytic = torch.autograd.grad(loss(outputs), outputs)[0]
    reference = torch.autograd.grad(plain(outputs, labels), outputs)[0]
    torch.testing.assert_close(analytic.double(), reference, rtol=1e-3, atol=1e-5)
    assert torch.autograd.gradcheck(lambda x: plain(x, labels), (outputs,))  # the reference itself


def test_images_without_valid_pixels_count_for_nothing():
    outputs, labels = random_case(3, 4, 5, 5, 3, seed=2)
    labels[1] = 255
    outputs = outputs.float().requires_grad_()
    result = exact_frobenius_from_raw(outputs, labels)
    torch.testing.assert_close(result, plain(outputs, labels))
    result.backward()
    assert torch.equal(outputs.grad[1], torch.zeros_like(outputs.grad[1]))
    void = torch.full_like(labels, 255)
    empty = exact_frobenius_from_raw(outputs, void)
    assert empty.item() == 0.0
    empty.backward()
