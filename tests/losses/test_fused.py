"""The fused Triton loss against the plain torch loss (on the CPU through Triton's interpreter)."""

import pytest
import torch
import torch.nn.functional as F

from dsc.losses import SpectralLoss, spectral_loss
from dsc.losses.fused import (
    fused_kernels_available,
    fused_spectral_frobenius,
    normalized_gram_and_sums,
    triton_interpreter_enabled,
)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
pytestmark = pytest.mark.skipif(
    not (fused_kernels_available(torch.empty(0, device=DEVICE)) or triton_interpreter_enabled()),
    reason="needs Triton: a GPU, or TRITON_INTERPRET=1 on the CPU",
)


def reference(outputs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and gradient of the plain path, in float64."""
    x = outputs.detach().double().requires_grad_()
    loss = spectral_loss(F.normalize(x, dim=1), labels, 255)
    loss.backward()
    return loss.detach(), x.grad


def fused(outputs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = outputs.detach().clone().requires_grad_()
    loss = fused_spectral_frobenius(x, labels)
    loss.backward()
    return loss.detach(), x.grad


def random_case(batch: int, dim: int, height: int, width: int, instances: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    outputs = torch.randn(batch, dim, height, width, generator=generator)
    labels = torch.randint(0, instances, (batch, height, width), generator=generator)
    labels[:, :2] = 255  # void rows
    return outputs.to(DEVICE), labels.to(DEVICE)


@pytest.mark.parametrize(
    ("dim", "height", "width", "instances"),
    [(21, 9, 13, 4), (3, 5, 7, 2), (32, 8, 8, 30), (21, 40, 60, 6)],  # the last: many pixel blocks
)
@pytest.mark.parametrize("channels_last", [False, True])
def test_value_and_gradient_match_the_plain_loss(dim, height, width, instances, channels_last):
    outputs, labels = random_case(2, dim, height, width, instances)
    if channels_last:
        outputs = outputs.contiguous(memory_format=torch.channels_last)
    expected_loss, expected_grad = reference(outputs, labels)
    loss, grad = fused(outputs, labels)
    assert loss.item() == pytest.approx(expected_loss.item(), rel=1e-5, abs=1e-7)
    assert grad.stride() == outputs.stride()
    torch.testing.assert_close(grad.double(), expected_grad, rtol=1e-4, atol=1e-7)


def test_statistics_are_gram_instance_sums_and_sizes():
    outputs, labels = random_case(1, 5, 6, 7, 3)
    gram, sums, sizes = normalized_gram_and_sums(outputs, labels, max_instances=16)
    features = F.normalize(outputs, dim=1).flatten(2)[0].T  # (n, d)
    valid = labels.flatten() != 255
    features, ids = features[valid], labels.flatten()[valid]
    torch.testing.assert_close(gram[0], features.T @ features, rtol=1e-5, atol=1e-5)
    one_hot = F.one_hot(ids, 16).float()
    torch.testing.assert_close(sums[0], one_hot.T @ features, rtol=1e-5, atol=1e-5)
    assert torch.equal(sizes[0], one_hot.sum(0))


def test_bfloat16_outputs_give_bfloat16_gradients_of_the_rounded_input():
    outputs, labels = random_case(2, 21, 9, 13, 4)
    outputs = outputs.bfloat16()
    expected_loss, expected_grad = reference(outputs, labels)
    loss, grad = fused(outputs, labels)
    assert grad.dtype == torch.bfloat16
    assert loss.item() == pytest.approx(expected_loss.item(), rel=1e-4)
    torch.testing.assert_close(grad.double(), expected_grad, rtol=2e-2, atol=1e-5)


def test_void_images_and_zero_vectors_stay_finite():
    outputs, labels = random_case(3, 21, 6, 6, 3)
    labels[1] = 255  # an image without valid pixels
    outputs[0, :, 3, 3] = 0.0  # a pixel whose output is the zero vector
    expected_loss, expected_grad = reference(outputs, labels)
    loss, grad = fused(outputs, labels)
    assert torch.isfinite(grad).all() and (grad[1] == 0).all()
    assert loss.item() == pytest.approx(expected_loss.item(), rel=1e-5)
    torch.testing.assert_close(grad.double(), expected_grad, rtol=1e-4, atol=1e-6)
    all_void = torch.full_like(labels, 255)
    loss, grad = fused(outputs, all_void)
    assert loss.item() == 0.0 and (grad == 0).all()


def test_instance_ids_beyond_the_table_are_refused():
    outputs, labels = random_case(1, 4, 4, 4, 2)
    labels[0, 3, 3] = 300
    with pytest.raises(RuntimeError, match=r"instance ids must lie in \[0, 256\)"):
        fused_spectral_frobenius(outputs, labels)
        if DEVICE == "cuda":
            torch.cuda.synchronize()


@pytest.mark.parametrize("sample_size", [None, 64])
@pytest.mark.parametrize("fused_option", [True, False])
def test_loss_from_raw_outputs_equals_the_loss_of_normalised_outputs(sample_size, fused_option):
    outputs, labels = random_case(2, 8, 10, 12, 4, seed=1)
    labels[1] = 255
    loss_fn = SpectralLoss(sample_size=sample_size, fused=fused_option)
    pixel_sample = None
    if sample_size is not None:
        pixel_sample = torch.randint(0, 120, (2, sample_size), generator=torch.Generator().manual_seed(2))
        pixel_sample = pixel_sample.to(DEVICE)
    x = outputs.clone().requires_grad_()
    loss_fn.from_raw_outputs(x, labels, pixel_sample=pixel_sample).backward()
    y = outputs.clone().requires_grad_()
    loss_fn(F.normalize(y, dim=1), labels, pixel_sample=pixel_sample).backward()
    torch.testing.assert_close(x.grad, y.grad, rtol=1e-4, atol=1e-7)


def test_self_check_accepts_the_kernels_and_refuses_a_broken_one(monkeypatch):
    from dsc.losses import fused as fused_module
    from dsc.losses import spectral as spectral_module

    assert spectral_module._self_check(torch.device(DEVICE))

    def broken(outputs, labels, *args):
        return 2 * fused_module.normalized_gram_and_sums(outputs, labels)[0].square().sum()

    monkeypatch.setattr(fused_module, "fused_spectral_frobenius", broken)
    with pytest.warns(RuntimeWarning, match="failed its check"):
        assert not spectral_module._self_check(torch.device(DEVICE))


def test_loss_is_computed_in_float32_under_bfloat16_autocast():
    outputs, labels = random_case(2, 8, 10, 12, 4, seed=3)
    outputs = outputs.bfloat16()
    expected = spectral_loss(F.normalize(outputs.double(), dim=1), labels, 255)
    with torch.autocast(DEVICE, dtype=torch.bfloat16):
        loss = SpectralLoss(fused=False).from_raw_outputs(outputs, labels)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
