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


def explicit_residuals(embeddings, labels):
    """(R, n) per image with valid pixels: the explicit n × n residual F Fᵀ − A and n."""
    for image_embeddings, image_labels in zip(embeddings, labels, strict=True):
        valid = image_labels.flatten() != VOID
        if valid.any():
            features = image_embeddings.flatten(1).T[valid]
            ids = image_labels.flatten()[valid]
            yield features @ features.T - (ids[:, None] == ids[None, :]).to(features.dtype), valid.sum()


def brute_force_loss(embeddings, labels):
    """Mean over images with valid pixels of ‖F Fᵀ − A‖²_F / n², with explicit n × n matrices."""
    return torch.stack([r.square().sum() / n**2 for r, n in explicit_residuals(embeddings, labels)]).mean()


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


# --- Schatten norms: every unitarily invariant norm dsc offers, against explicit n × n ---


def brute_force_norm_loss(embeddings, labels, norm, p=None):
    """Mean over images of the norm of the explicit n × n residual, scaled by 1/n."""
    per_image = []
    for residual, n in explicit_residuals(embeddings, labels):
        if norm == "nuclear":
            value = torch.linalg.matrix_norm(residual, ord="nuc")
        elif norm == "operator":
            value = torch.linalg.matrix_norm(residual, ord=2)
        else:
            value = torch.linalg.svdvals(residual).pow(p).sum().pow(1 / p)
        per_image.append(value / n)
    return torch.stack(per_image).mean()


NORM_CASES = [("nuclear", None), ("operator", None), ("schatten", 1.5), ("schatten", 3.0), ("schatten", 2.0)]


@pytest.mark.parametrize("norm,p", NORM_CASES)
@pytest.mark.parametrize("dim,instances", [(1, 1), (2, 5), (5, 3), (8, 12)])
def test_schatten_norms_match_explicit_residual(norm, p, dim, instances):
    embeddings, labels = random_batch(dim=dim, instances=instances, void_fraction=0.25, seed=dim + instances)
    loss = spectral_loss(embeddings, labels, norm=norm, p=p)
    reference = brute_force_norm_loss(embeddings, labels, norm, p)
    torch.testing.assert_close(loss, reference)
    gradient, reference_gradient = (torch.autograd.grad(x, embeddings)[0] for x in (loss, reference))
    torch.testing.assert_close(gradient, reference_gradient)


def test_schatten_two_is_the_root_of_the_frobenius_loss():
    embeddings, labels = random_batch(batch=1)
    schatten = spectral_loss(embeddings, labels, norm="schatten", p=2)
    torch.testing.assert_close(schatten, spectral_loss(embeddings, labels).sqrt())


def test_float32_embeddings_give_float32_losses_close_to_float64():
    embeddings, labels = random_batch(dim=6, instances=4)
    for norm, p in NORM_CASES:
        single = spectral_loss(embeddings.float(), labels, norm=norm, p=p)
        assert single.dtype == torch.float32
        torch.testing.assert_close(
            single.double(), spectral_loss(embeddings, labels, norm=norm, p=p), rtol=1e-5, atol=1e-6
        )


def test_repeated_eigenvalues_keep_gradients_finite_and_exact():
    """Equal-sized instances and duplicated embedding columns make eigenvalues of R and of ZᵀZ repeat."""
    labels = torch.tensor([[[0, 0, 1, 1], [2, 2, 3, 3], [VOID, 0, 1, VOID]]])
    base = F.normalize(torch.tensor([[1.0, 0.2], [0.2, 1.0], [1.0, -0.2], [-0.2, 1.0]]), dim=1).double()
    rows = base[labels.clamp(max=3)]  # pixels of one instance share one embedding
    embeddings = torch.cat([rows, rows], dim=-1).div(2**0.5).permute(0, 3, 1, 2).contiguous().requires_grad_()
    for norm, p in NORM_CASES:
        loss = spectral_loss(embeddings, labels, norm=norm, p=p)
        (gradient,) = torch.autograd.grad(loss, embeddings)
        reference = brute_force_norm_loss(embeddings, labels, norm, p)
        torch.testing.assert_close(loss, reference)
        assert torch.isfinite(gradient).all()
        if norm != "operator":  # the operator norm's tie-breaking subgradient is a choice, not unique
            (reference_gradient,) = torch.autograd.grad(reference, embeddings)
            torch.testing.assert_close(gradient, reference_gradient)


@pytest.mark.parametrize("norm,p", NORM_CASES)
def test_perfect_embedding_and_empty_images_give_zero_without_nan(norm, p):
    labels = torch.tensor([[[0, 0, 1], [2, 2, VOID]], [[VOID] * 3] * 2])
    embeddings = F.one_hot(labels.clamp(max=3), 4).permute(0, 3, 1, 2).double().requires_grad_()
    loss = spectral_loss(embeddings, labels, norm=norm, p=p)
    (gradient,) = torch.autograd.grad(loss, embeddings)
    assert loss.item() == pytest.approx(0.0, abs=1e-12)
    assert torch.isfinite(gradient).all()

    one_instance = torch.zeros(1, 3, 3, dtype=torch.long)
    embeddings, _ = random_batch(batch=1, height=3, width=3)
    loss = spectral_loss(embeddings, one_instance, norm=norm, p=p)
    torch.testing.assert_close(loss, brute_force_norm_loss(embeddings, one_instance, norm, p))


@pytest.mark.parametrize("norm,p", NORM_CASES)
def test_sampled_norms_are_the_norm_of_the_sampled_residual(norm, p):
    embeddings, labels = random_batch(void_fraction=0.3)
    loss = spectral_loss(
        embeddings, labels, sample_size=40, norm=norm, p=p, generator=torch.Generator().manual_seed(1)
    )
    valid = (labels.flatten(1) != VOID).float()
    picks = torch.multinomial(valid, 40, replacement=True, generator=torch.Generator().manual_seed(1))
    sampled_embeddings = embeddings.flatten(2).gather(
        2, picks.unsqueeze(1).expand(-1, embeddings.shape[1], -1)
    )
    sampled_labels = labels.flatten(1).gather(1, picks)
    reference = brute_force_norm_loss(sampled_embeddings.unsqueeze(-1), sampled_labels.unsqueeze(-1), norm, p)
    torch.testing.assert_close(loss, reference)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"norm": "spectral"}, "norm must be one of"),
        ({"norm": "schatten"}, "needs p >= 1"),
        ({"norm": "schatten", "p": 0.5}, "needs p >= 1"),
        ({"norm": "nuclear", "p": 2}, "only used with norm='schatten'"),
    ],
)
def test_bad_norm_arguments_are_reported(kwargs, message):
    embeddings, labels = random_batch()
    with pytest.raises(ValueError, match=message):
        spectral_loss(embeddings, labels, **kwargs)


def test_schatten_infinity_is_the_operator_norm():
    embeddings, labels = random_batch()
    torch.testing.assert_close(
        spectral_loss(embeddings, labels, norm="schatten", p=float("inf")),
        spectral_loss(embeddings, labels, norm="operator"),
    )
