"""The discriminative loss against plain per-instance loops, value and gradient, and its edge cases."""

import itertools

import pytest
import torch

from dsc.contracts import NetworkOutputs
from dsc.losses import DiscriminativeLoss
from dsc.losses.discriminative import discriminative_terms


def brute_force(embeddings, labels, delta_var, delta_dist, weights, background="cluster", void=255):
    """Eq. 1-4 of De Brabandere et al. (2017), one image and one cluster at a time."""
    alpha, beta, gamma = weights
    losses = []
    for image in range(embeddings.shape[0]):
        points = embeddings[image].flatten(1).T
        ids = labels[image].flatten()
        keep = [i for i in ids.unique().tolist() if i != void and not (background == "ignore" and i == 0)]
        if not keep:
            continue
        means = {c: points[ids == c].mean(dim=0) for c in keep}
        variance = sum(
            sum(
                torch.clamp(torch.linalg.norm(means[c] - x) - delta_var, min=0) ** 2 for x in points[ids == c]
            )
            / int((ids == c).sum())
            for c in keep
        ) / len(keep)
        pairs = list(itertools.permutations(keep, 2))
        distance = (
            sum(
                torch.clamp(2 * delta_dist - torch.linalg.norm(means[a] - means[b]), min=0) ** 2
                for a, b in pairs
            )
            / len(pairs)
            if pairs
            else torch.zeros((), dtype=embeddings.dtype)
        )
        regularisation = sum(torch.linalg.norm(means[c]) for c in keep) / len(keep)
        losses.append(alpha * variance + beta * distance + gamma * regularisation)
    return torch.stack(losses).mean() if losses else torch.zeros((), dtype=embeddings.dtype)


@pytest.mark.parametrize("background", ["cluster", "ignore"])
@pytest.mark.parametrize("seed", [0, 1])
def test_value_and_gradient_match_the_per_instance_loops(background, seed):
    generator = torch.Generator().manual_seed(seed)
    embeddings = (torch.randn(3, 4, 5, 6, generator=generator, dtype=torch.float64) * 0.8).requires_grad_()
    labels = torch.randint(0, 4, (3, 5, 6), generator=generator)
    labels[0, 0] = 255
    labels[1, 2:] = 7  # a far id
    labels[2] = 255  # an image without valid pixels is skipped
    loss_fn = DiscriminativeLoss(delta_var=0.3, delta_dist=1.2, var_weight=1.0, dist_weight=0.7,
                                 reg_weight=0.01, background=background)  # fmt: skip
    variance, distance, regularisation, has = discriminative_terms(
        embeddings, labels, 255, 0.3, 1.2, background
    )
    value = (1.0 * variance + 0.7 * distance + 0.01 * regularisation)[has].mean()
    reference = brute_force(embeddings, labels, 0.3, 1.2, (1.0, 0.7, 0.01), background)
    assert value.item() == pytest.approx(reference.item(), rel=1e-10)
    (gradient,) = torch.autograd.grad(value, embeddings, retain_graph=True)
    (expected,) = torch.autograd.grad(reference, embeddings)
    torch.testing.assert_close(gradient, expected, rtol=1e-8, atol=1e-10)
    # The Objective computes the same in float32 from the raw head.
    outputs = NetworkOutputs(embeddings.detach().float(), None)
    assert loss_fn.training_loss(outputs, {"instances": labels}).item() == pytest.approx(
        reference.item(), rel=1e-5
    )


def test_one_instance_no_instance_and_coincident_points_are_finite():
    loss_fn = DiscriminativeLoss()
    embeddings = torch.zeros(2, 3, 4, 4, requires_grad=True)  # every point at the origin
    labels = torch.zeros(2, 4, 4, dtype=torch.long)
    labels[1] = 255
    loss = loss_fn(embeddings, labels)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(embeddings.grad).all()
    # One cluster at the origin: no pull (within δ_v), no push (one cluster), ‖μ‖ = 0.
    assert loss.item() == pytest.approx(0.0, abs=1e-5)
    two = torch.zeros(1, 3, 4, 4, requires_grad=True)
    split = torch.zeros(1, 4, 4, dtype=torch.long)
    split[0, :2] = 1
    coincident = loss_fn(two, split)  # two clusters with the same mean: the full push, finite gradient
    coincident.backward()
    assert coincident.item() == pytest.approx((2 * 1.5) ** 2, rel=1e-4) and torch.isfinite(two.grad).all()


def test_options_that_cannot_work_are_refused():
    with pytest.raises(ValueError, match="unit vectors are at most 2 apart"):
        DiscriminativeLoss(unit=True)
    DiscriminativeLoss(unit=True, delta_var=0.2, delta_dist=0.8)
    with pytest.raises(ValueError, match="delta_var < delta_dist"):
        DiscriminativeLoss(delta_var=2.0)
    with pytest.raises(ValueError, match="background must be one of cluster, ignore"):
        DiscriminativeLoss(background="mask")
