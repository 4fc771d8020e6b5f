"""dsc.backbones.convert: any semantic network with a new final classifier becomes a backbone."""

import pytest
import segmentation_models_pytorch as smp
import torch
import torchvision
from torch import nn

from dsc.backbones import convert
from dsc.contracts import InvalidInputError
from dsc.train import train


def test_a_torchvision_model_gets_a_classifier_of_d_plus_c_channels_and_the_input_size():
    network = torchvision.models.segmentation.deeplabv3_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=21, aux_loss=False
    )
    kept = network.backbone["0"][0].weight.clone()
    backbone = convert(network, out_channels=20).eval()
    assert backbone.last_layers == ("network.classifier.4",)
    assert backbone.network.classifier[4].out_channels == 20
    assert torch.equal(backbone.network.backbone["0"][0].weight, kept), "only the classifier is new"
    with torch.no_grad():
        assert backbone(torch.rand(2, 3, 72, 56)).shape == (2, 20, 72, 56)  # its "out", full size


def test_an_smp_model_gets_a_new_segmentation_head():
    backbone = convert(smp.Unet("resnet18", encoder_weights=None, classes=3), out_channels=17).eval()
    assert backbone.last_layers == ("network.segmentation_head.0",)
    with torch.no_grad():
        assert backbone(torch.rand(1, 3, 64, 64)).shape == (1, 17, 64, 64)


class Coarse(nn.Module):
    """A network whose scores are 4× coarser than its input, its classifier at ``head.score``."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 8, 3, stride=4, padding=1)
        self.head = nn.Module()
        self.head.score = nn.Conv2d(8, classes, 1)

    def forward(self, images):
        return self.head.score(torch.relu(self.features(images)))


def test_a_given_attribute_path_and_a_coarse_map_up_sampled():
    backbone = convert(Coarse(), out_channels=6, classifier="head.score")
    assert backbone(torch.rand(1, 3, 40, 48)).shape == (1, 6, 40, 48)
    found = r"final classifier of Coarse: head is a Module; its last Conv2d is head\.score\. Name it with"
    with pytest.raises(InvalidInputError, match=found):
        convert(Coarse(), out_channels=6)


class Flat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.classifier = nn.Conv2d(3, 4, 1)

    def forward(self, images):
        return self.classifier(images).mean(dim=(2, 3))  # (B, K): not a score map


def test_a_network_that_gives_no_score_map_is_named():
    with pytest.raises(InvalidInputError, match=r"Flat returned \(2, 6\), not \(B, K, H', W'\) logits"):
        convert(Flat(), out_channels=6)(torch.rand(2, 3, 8, 8))

    class WithLinear(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.classifier = nn.Linear(3, 4)

    with pytest.raises(InvalidInputError, match="classifier is a Linear; it has no Conv2d"):
        convert(WithLinear(), out_channels=6)


def test_backbone_custom_trains_your_own_class_from_the_command_line(make_config):
    optimized, _ = train(
        make_config(
            "backbone=custom",
            "backbone.network._target_=torchvision.models.segmentation.deeplabv3_mobilenet_v3_large",
            "+backbone.network.weights=null", "+backbone.network.weights_backbone=null", "debug=fdr",
        )
    )  # fmt: skip
    assert 0.0 <= optimized <= 1.0
