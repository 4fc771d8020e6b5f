"""The compiled C kernel of the exact loss on CPUs: the plain loss's value and gradient, in every
memory format, block layout and thread split, and the fallback where it cannot be built."""

import shutil

import pytest
import torch
import torch.nn.functional as F

from dsc.losses import SpectralLoss, compiled_cpu, rows_in_cache, spectral_loss
from dsc.losses.compiled_cpu import exact_frobenius_from_raw

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler (cc)")


def plain(outputs, labels):
    return spectral_loss(F.normalize(outputs.double(), dim=1), labels, 255)


def random_case(batch, dim, height, width, instances, seed=0):
    generator = torch.Generator().manual_seed(seed)
    outputs = torch.randn(batch, dim, height, width, generator=generator)
    labels = torch.randint(0, instances, (batch, height, width), generator=generator)
    labels[:, 0, :3] = 255  # void pixels
    labels[:, -1, -5:] = 2  # a run of one instance that crosses a block boundary
    outputs[0, :, 1, 2] = 0.0  # a zero vector: F.normalize's ε branch
    outputs[-1, :, 2, 1] = 1e-14
    return outputs, labels


def assert_matches_plain(outputs, labels):
    x = outputs.detach().clone(memory_format=torch.preserve_format).requires_grad_()
    reference = outputs.detach().double().requires_grad_()
    weight = torch.randn(())
    expected = plain(reference, labels)
    result = exact_frobenius_from_raw(x, labels)
    torch.testing.assert_close(result.double(), expected, rtol=1e-5, atol=1e-6)
    (weight * expected).backward()
    (weight * result).backward()
    torch.testing.assert_close(x.grad.double(), reference.grad, rtol=1e-4, atol=1e-6)
    if outputs.is_contiguous() or outputs.is_contiguous(memory_format=torch.channels_last):
        assert x.grad.stride() == x.stride()  # the gradient keeps the memory format
    assert torch.equal(x.detach(), outputs)  # the outputs are left as they were


# 7 × 9 pixels: one partial block; 16 × 32: whole, aligned blocks (the streamed gradient stores);
# 37 × 41: whole blocks and a partial one, split unevenly between threads.
@pytest.mark.parametrize("height, width", [(7, 9), (16, 32), (37, 41)])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("threads", [1, 3])
def test_value_and_gradient_match_the_plain_loss(height, width, channels_last, threads, monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    outputs, labels = random_case(3, 6, height, width, 4)
    if channels_last:
        outputs = outputs.contiguous(memory_format=torch.channels_last)
    assert_matches_plain(outputs, labels)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("threads", [1, 2])
def test_instances_that_span_many_blocks(channels_last, threads, monkeypatch):
    """Runs of one instance over whole blocks, and longer than the kernel's float partial sums."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    outputs, _ = random_case(2, 5, 64, 70, 1, seed=7)
    labels = torch.zeros(2, 64, 70, dtype=torch.int64)
    labels[0, 40:] = 1  # 2800 pixels, then 1680
    labels[0, 50:, 30:] = 255
    labels[1, :, 35:] = 3  # every row crosses from instance 0 to 3 inside a block
    labels[1, 60:] = 2
    if channels_last:
        outputs = outputs.contiguous(memory_format=torch.channels_last)
    assert_matches_plain(outputs, labels)


@pytest.mark.parametrize("dim", [1, 16, 21, 33])
def test_every_embedding_dimension_has_its_kernel(dim):
    assert_matches_plain(*random_case(2, dim, 11, 13, 5, seed=dim))


def test_wide_label_ranges_are_compacted_first():
    outputs, labels = random_case(2, 5, 9, 10, 4, seed=3)
    labels[0] = labels[0] * 1000 + 70_000  # ids far apart, also below the void label
    labels[1, 0, :3] = 255
    labels[1, 3, 3] = -40  # a negative id is an instance too
    assert_matches_plain(outputs, labels)


def test_other_layouts_and_dtypes_are_read_as_float32():
    outputs, labels = random_case(2, 4, 8, 12, 3, seed=4)
    wider = torch.cat([outputs, outputs], dim=3)[..., ::2]  # neither NCHW- nor channels-last-contiguous
    assert_matches_plain(wider, labels)
    expected = exact_frobenius_from_raw(outputs, labels)
    torch.testing.assert_close(exact_frobenius_from_raw(outputs.double(), labels), expected)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_under_cpu_autocast_the_kernel_computes_in_float32(dtype):
    """Mixed precision on the CPU (trainer.precision=bf16-mixed or 16-mixed): the kernel gets
    float32 inputs, and its loss and gradient are the float32 ones."""
    _, labels = random_case(2, 4, 8, 12, 3, seed=5)
    outputs = torch.randn(2, 4, 8, 12, generator=torch.Generator().manual_seed(5))  # no ~0 vectors
    low = outputs.to(dtype).requires_grad_()
    with torch.autocast("cpu", dtype=dtype):
        result = exact_frobenius_from_raw(low, labels)
    result.backward()
    reference = low.detach().float().requires_grad_()
    expected = exact_frobenius_from_raw(reference, labels)
    expected.backward()
    assert result.dtype == torch.float32
    torch.testing.assert_close(result, expected)
    torch.testing.assert_close(low.grad.float(), reference.grad, rtol=1e-2, atol=1e-3)
    assert low.grad.dtype == dtype


def test_images_without_valid_pixels_count_for_nothing():
    outputs, labels = random_case(3, 4, 5, 5, 3, seed=2)
    labels[1] = 255
    outputs = outputs.requires_grad_()
    result = exact_frobenius_from_raw(outputs, labels)
    torch.testing.assert_close(result.double(), plain(outputs, labels))
    result.backward()
    assert torch.equal(outputs.grad[1], torch.zeros_like(outputs.grad[1]))
    empty = exact_frobenius_from_raw(outputs, torch.full_like(labels, 255))
    assert empty.item() == 0.0
    empty.backward()


def test_the_spectral_loss_falls_back_with_a_warning_without_a_compiler(monkeypatch):
    monkeypatch.setattr(compiled_cpu, "_KERNELS", {})
    monkeypatch.setenv("CC", "no-such-compiler")
    outputs, labels = random_case(2, 3, 6, 7, 3, seed=5)
    with pytest.warns(RuntimeWarning, match="no C compiler 'no-such-compiler'"):
        assert compiled_cpu.kernel(3) is None
    with pytest.raises(RuntimeError, match="could not be built"):
        exact_frobenius_from_raw(outputs, labels)
    expected = rows_in_cache.exact_frobenius_from_raw(outputs, labels)
    torch.testing.assert_close(SpectralLoss().from_raw_outputs(outputs, labels), expected)


def test_a_kernel_that_disagrees_with_its_reference_is_not_used(monkeypatch):
    monkeypatch.setattr(compiled_cpu, "_KERNELS", {})
    reference = rows_in_cache.exact_frobenius_from_raw
    monkeypatch.setattr(rows_in_cache, "exact_frobenius_from_raw", lambda *args: 1.01 * reference(*args))
    with pytest.warns(RuntimeWarning, match="self-check: loss"):
        assert compiled_cpu.kernel(4) is None


def test_spectral_loss_uses_the_kernel_unless_fused_is_off(monkeypatch):
    outputs, labels = random_case(2, 4, 6, 7, 3, seed=6)
    calls = []
    monkeypatch.setattr(compiled_cpu, "exact_frobenius_from_raw", lambda *args: calls.append(args) or 0.0)
    SpectralLoss().from_raw_outputs(outputs, labels)
    assert len(calls) == 1
    SpectralLoss(fused=False).from_raw_outputs(outputs, labels)
    assert len(calls) == 1
