import pytest
import torch
import torch.nn.functional as F

from dsc.data import VOID
from dsc.losses import SemanticCrossEntropy, spectral_loss
from dsc.ops import sample_pixels


def labels_with_sizes():
    labels = torch.cat([torch.zeros(900), torch.ones(90), torch.full((10,), 2), torch.full((200,), VOID)])
    return labels.long().view(1, 1200)


def test_uniform_sampling_draws_valid_pixels_in_proportion():
    picks = sample_pixels(labels_with_sizes(), 20000, generator=torch.Generator().manual_seed(0))
    drawn = labels_with_sizes()[0, picks[0]]
    assert (drawn != VOID).all()
    assert abs((drawn == 0).float().mean() - 0.9) < 0.01


def test_balanced_sampling_sees_every_instance_equally():
    picks = sample_pixels(labels_with_sizes(), 30000, "balanced", generator=torch.Generator().manual_seed(0))
    shares = torch.bincount(labels_with_sizes()[0, picks[0]], minlength=3).float() / 30000
    torch.testing.assert_close(shares, torch.full((3,), 1 / 3), atol=0.015, rtol=0)


def test_sampling_arguments_and_all_void_images():
    all_void = torch.full((2, 50), VOID)
    assert sample_pixels(all_void, 8).shape == (2, 8)
    with pytest.raises(ValueError, match="sampling must be"):
        sample_pixels(labels_with_sizes(), 8, "stratified")


def test_given_pixel_sample_is_the_sample():
    embeddings = F.normalize(torch.randn(2, 4, 6, 5, dtype=torch.float64), dim=1)
    labels = torch.randint(0, 3, (2, 6, 5))
    picks = sample_pixels(labels, 16, generator=torch.Generator().manual_seed(3))
    drawn = spectral_loss(embeddings, labels, sample_size=16, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(spectral_loss(embeddings, labels, pixel_sample=picks), drawn)


def test_cross_entropy_is_the_mean_of_per_image_torch_losses_and_zero_on_void():
    logits = torch.randn(3, 21, 5, 7, requires_grad=True)
    classes = torch.randint(0, 21, (3, 5, 7))
    classes[0, :2] = VOID
    classes[2] = VOID  # an image with no valid pixel counts as 0
    loss = SemanticCrossEntropy()(logits, classes)
    per_image = [F.cross_entropy(logits[i : i + 1], classes[i : i + 1], ignore_index=VOID) for i in range(2)]
    torch.testing.assert_close(loss, sum(per_image) / 3)
    # Two halves of a batch (two DDP processes) average to the loss of the whole batch.
    halves = [
        SemanticCrossEntropy()(logits[:2], classes[:2]),
        SemanticCrossEntropy()(logits[2:], classes[2:]),
    ]
    torch.testing.assert_close(loss, (2 * halves[0] + halves[1]) / 3)
    empty = SemanticCrossEntropy()(logits, torch.full_like(classes, VOID))
    empty.backward()
    assert empty.item() == 0.0 and torch.isfinite(logits.grad).all()
