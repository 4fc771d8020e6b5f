"""The joint loss: the spectral loss on the embedding head plus weighted cross-entropy on the classes."""

import pytest
import torch
import torch.nn.functional as F

from dsc.contracts import NetworkOutputs
from dsc.data import VOID
from dsc.losses import JointLoss, SemanticCrossEntropy, SpectralLoss


def batch_and_outputs(sample_size=None):
    generator = torch.Generator().manual_seed(0)
    instances = torch.randint(0, 4, (2, 6, 7), generator=generator)
    instances[:, 0] = VOID
    classes = torch.where(instances == VOID, VOID, instances % 3)
    raw = torch.randn(2, 5 + 3, 6, 7, generator=generator, requires_grad=True)
    return {"instances": instances, "classes": classes}, raw


@pytest.mark.parametrize("class_weight", [0.0, 0.5, 2.0])
def test_joint_loss_is_spectral_plus_weighted_cross_entropy(class_weight):
    batch, raw = batch_and_outputs()
    outputs = NetworkOutputs.split(raw, embed_dim=5)
    joint = JointLoss(fused=False, class_weight=class_weight)
    expected = SpectralLoss(fused=False)(F.normalize(raw[:, :5], dim=1), batch["instances"])
    expected = expected + class_weight * SemanticCrossEntropy()(raw[:, 5:], batch["classes"])
    torch.testing.assert_close(joint.training_loss(outputs, batch), expected)
    torch.testing.assert_close(joint.validation_loss(outputs, batch), expected)


def test_joint_loss_trains_both_heads():
    batch, raw = batch_and_outputs()
    JointLoss(fused=False, sample_size=16).training_loss(NetworkOutputs.split(raw, 5), batch).backward()
    assert raw.grad[:, :5].abs().sum() > 0 and raw.grad[:, 5:].abs().sum() > 0


def test_negative_class_weight_is_refused():
    with pytest.raises(ValueError, match="class_weight"):
        JointLoss(class_weight=-1.0)
