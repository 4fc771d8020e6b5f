"""The supervised pixel contrastive loss against a per-anchor, per-pair loop, and its edge cases."""

import pytest
import torch
import torch.nn.functional as F

from dsc.contracts import NetworkOutputs
from dsc.losses import ContrastiveLoss
from dsc.losses.contrastive import supervised_contrastive
from dsc.ops.sampling import sample_pixels


def brute_force(rows, labels, temperature):
    """SupCon's L_out, one image, one anchor and one positive at a time."""
    images = []
    for image in range(rows.shape[0]):
        z, ids = rows[image], labels[image].tolist()
        anchors = []
        for i in range(len(ids)):
            positives = [p for p in range(len(ids)) if p != i and ids[p] == ids[i]]
            if not positives:
                continue
            denominator = sum(torch.exp(z[i] @ z[a] / temperature) for a in range(len(ids)) if a != i)
            anchors.append(
                -sum(torch.log(torch.exp(z[i] @ z[p] / temperature) / denominator) for p in positives)
                / len(positives)
            )
        if anchors:
            images.append(sum(anchors) / len(anchors))
    return sum(images) / len(images)


def test_value_and_gradient_match_the_per_pair_loop():
    generator = torch.Generator().manual_seed(3)
    raw = torch.randn(2, 9, 5, dtype=torch.float64, generator=generator).requires_grad_()
    rows = F.normalize(raw, dim=-1)
    labels = torch.tensor([[0, 0, 1, 1, 1, 2, 3, 3, 4], [5, 5, 5, 5, 6, 6, 7, 8, 9]])
    per_image, has = supervised_contrastive(rows, labels, torch.ones_like(labels, dtype=torch.bool), 0.2)
    value = per_image[has].mean()
    reference = brute_force(rows, labels, 0.2)
    assert value.item() == pytest.approx(reference.item(), rel=1e-10)
    (gradient,) = torch.autograd.grad(value, raw, retain_graph=True)
    (expected,) = torch.autograd.grad(reference, raw)
    torch.testing.assert_close(gradient, expected, rtol=1e-8, atol=1e-12)


def test_the_objective_samples_with_its_generator_and_validates_on_a_fixed_sample():
    generator = torch.Generator().manual_seed(0)
    raw = torch.randn(2, 4, 6, 7, generator=generator)
    labels = torch.randint(0, 3, (2, 6, 7), generator=generator)
    labels[0, :2] = 255
    loss_fn = ContrastiveLoss(temperature=0.5, sample_size=16)
    picks = sample_pixels(labels.flatten(1), 16, "uniform", 255, torch.Generator().manual_seed(5))
    rows = F.normalize(
        raw.flatten(2).transpose(1, 2).gather(1, picks.unsqueeze(-1).expand(-1, -1, 4)), dim=-1
    )
    expected = brute_force(rows, labels.flatten(1).gather(1, picks), 0.5)
    outputs, batch = NetworkOutputs(raw, None), {"instances": labels}
    trained = loss_fn.training_loss(outputs, batch, torch.Generator().manual_seed(5))
    assert trained.item() == pytest.approx(expected.item(), rel=1e-5)
    assert loss_fn.validation_loss(outputs, batch).item() == loss_fn.validation_loss(outputs, batch).item()


def test_images_without_pairs_or_pixels_give_a_zero_with_a_gradient():
    raw = torch.randn(2, 3, 2, 2, requires_grad=True)
    labels = torch.full((2, 2, 2), 255)
    loss = ContrastiveLoss(sample_size=4)(raw, labels)
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(raw.grad, torch.zeros_like(raw))
    rows = F.normalize(torch.randn(1, 3, 3), dim=-1)
    per_image, has = supervised_contrastive(
        rows, torch.tensor([[0, 1, 2]]), torch.ones(1, 3, dtype=torch.bool), 0.1
    )
    assert not has.item() and torch.isfinite(per_image).all()


def test_options_and_embeddings_that_cannot_work_are_refused():
    with pytest.raises(ValueError, match="temperature must be > 0"):
        ContrastiveLoss(temperature=0)
    with pytest.raises(ValueError, match="sample_size must be at least 2"):
        ContrastiveLoss(sample_size=1)
    with pytest.raises(ValueError, match="embed_dim >= 2"):
        ContrastiveLoss()(torch.randn(1, 1, 3, 3), torch.zeros(1, 3, 3, dtype=torch.long))
