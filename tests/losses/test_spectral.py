import pytest
import torch
import torch.nn.functional as F

from dsc.losses import spectral_loss

VOID = 255


def random_batch(batch=3, dim=5, height=6, width=7, instances=4, void_fraction=0.2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(batch, dim, height, width, generator=generator, dtype=torch.float64)
    embeddings = F.normalize(embeddings, dim=1).requires_grad_()
    labels = torch.randint(0, instances, (batch, height, width), generator=generator)
    labels[torch.rand(batch, height, width, generator=generator) < void_fraction] = VOID
    return embeddings, labels


def brute_force_loss(embeddings, labels):
    """Mean over images with valid pixels of ‖F Fᵀ − A‖²_F / n², with explicit n × n matrices."""
    per_image = []
    for image_embeddings, image_labels in zip(embeddings, labels, strict=True):
        valid = image_labels.flatten() != VOID
        if not valid.any():
            continue
        features = image_embeddings.flatten(1).T[valid]
        ids = image_labels.flatten()[valid]
        adjacency = (ids[:, None] == ids[None, :]).to(features.dtype)
        residual = features @ features.T - adjacency
        per_image.append(residual.square().sum() / valid.sum() ** 2)
    return torch.stack(per_image).mean()


@pytest.mark.parametrize("dim,instances,void_fraction", [(1, 1, 0.0), (3, 2, 0.3), (5, 4, 0.2), (21, 9, 0.5)])
def test_exact_loss_matches_brute_force_value_and_gradient(dim, instances, void_fraction):
    embeddings, labels = random_batch(dim=dim, instances=instances, void_fraction=void_fraction)
    loss = spectral_loss(embeddings, labels)
    (gradient,) = torch.autograd.grad(loss, embeddings)
    reference = brute_force_loss(embeddings, labels)
    (reference_gradient,) = torch.autograd.grad(reference, embeddings)
    torch.testing.assert_close(loss, reference)
    torch.testing.assert_close(gradient, reference_gradient)


def test_exact_loss_accepts_arbitrary_instance_ids():
    embeddings, labels = random_batch(instances=3)
    relabelled = labels.where(labels == VOID, labels * 1000 + 7)
    torch.testing.assert_close(spectral_loss(embeddings, relabelled), spectral_loss(embeddings, labels))


def test_perfect_embedding_has_zero_loss():
    """Theorem 2.1: one-hot rows per instance reproduce A exactly."""
    labels = torch.tensor([[[0, 0, 1], [2, 2, VOID]]])
    embeddings = F.one_hot(labels.clamp(max=3), 4).permute(0, 3, 1, 2).double()
    assert spectral_loss(embeddings, labels).item() == pytest.approx(0.0, abs=1e-12)


def test_all_void_images_are_skipped_without_nan():
    embeddings, labels = random_batch(batch=3)
    labels[1] = VOID
    loss = spectral_loss(embeddings, labels)
    reference = brute_force_loss(embeddings, labels)
    torch.testing.assert_close(loss, reference)

    labels[:] = VOID
    for sample_size in (None, 16):
        loss = spectral_loss(embeddings, labels, sample_size=sample_size)
        (gradient,) = torch.autograd.grad(loss, embeddings)
        assert loss.item() == 0.0
        assert torch.isfinite(gradient).all() and not gradient.any()


def test_one_instance_image():
    embeddings, labels = random_batch(instances=1, void_fraction=0.1)
    loss = spectral_loss(embeddings, labels)
    torch.testing.assert_close(loss, brute_force_loss(embeddings, labels))
    assert torch.isfinite(loss)


def test_sampled_loss_is_the_brute_force_loss_over_the_drawn_pairs():
    embeddings, labels = random_batch(void_fraction=0.3)
    sample_size = 50
    loss = spectral_loss(
        embeddings, labels, sample_size=sample_size, generator=torch.Generator().manual_seed(3)
    )

    # Redraw the same pixels and build the m × m residual over ordered pairs of distinct draws.
    valid = (labels.flatten(1) != VOID).float()
    picks = torch.multinomial(
        valid, sample_size, replacement=True, generator=torch.Generator().manual_seed(3)
    )
    per_image = []
    for image_embeddings, image_labels, image_picks in zip(embeddings, labels, picks, strict=True):
        features = image_embeddings.flatten(1).T[image_picks]
        ids = image_labels.flatten()[image_picks]
        residual = features @ features.T - (ids[:, None] == ids[None, :]).double()
        off_diagonal = ~torch.eye(sample_size, dtype=torch.bool)
        per_image.append(residual[off_diagonal].square().mean())
    reference = torch.stack(per_image).mean()
    torch.testing.assert_close(loss, reference)
    gradient, reference_gradient = (torch.autograd.grad(x, embeddings)[0] for x in (loss, reference))
    torch.testing.assert_close(gradient, reference_gradient)


def test_sampled_loss_is_unbiased():
    embeddings, labels = random_batch(batch=2, dim=3, height=5, width=5, instances=3, void_fraction=0.2)
    embeddings = embeddings.detach()
    exact = spectral_loss(embeddings, labels)
    generator = torch.Generator().manual_seed(0)
    draws = torch.stack(
        [spectral_loss(embeddings, labels, sample_size=8, generator=generator) for _ in range(4000)]
    )
    standard_error = draws.std() / len(draws) ** 0.5
    assert abs(draws.mean() - exact) < 4 * standard_error
    assert standard_error < 0.02 * exact  # the check above has teeth


def test_sample_size_below_two_is_rejected():
    embeddings, labels = random_batch()
    with pytest.raises(ValueError, match="sample_size"):
        spectral_loss(embeddings, labels, sample_size=1)


def test_shape_mismatch_is_reported():
    embeddings, labels = random_batch()
    with pytest.raises(ValueError, match="do not match"):
        spectral_loss(embeddings, labels[:, :-1])
