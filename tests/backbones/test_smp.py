"""backbone=smp: segmentation_models_pytorch networks, by smp's own names, with random weights."""

import pytest
import torch
from hydra_configs import SHALLOW_SMP

from dsc.backbones import SmpSegmentation
from dsc.contracts import InvalidInputError, MissingFileError
from dsc.train import train


@pytest.mark.parametrize(
    "arch, encoder, loss",
    [
        ("Unet", "resnet18", "spectral_frobenius"),
        ("Unet", "resnet18", "spectral_joint"),
        ("FPN", "tu-resnet18", "spectral_frobenius"),
        ("FPN", "tu-resnet18", "spectral_joint"),
    ],
)
def test_smp_networks_train_a_tiny_epoch(make_config, arch, encoder, loss):
    classes = ["model.num_classes=4"] if loss == "spectral_joint" else []
    optimized, metrics = train(
        make_config("backbone=smp", f"backbone.arch={arch}", f"backbone.encoder_name={encoder}",
                    *SHALLOW_SMP[arch], f"loss={loss}", *classes, "data.train.num_images=8",
                    "data.val.num_images=3")
    )  # fmt: skip
    assert 0.0 <= optimized <= 1.0
    assert ("val/mask_ap" in metrics) == bool(classes)


def test_any_input_size_gives_an_output_of_that_size():
    network = SmpSegmentation("Unet", "resnet18", out_channels=7).eval()
    with torch.no_grad():
        assert network(torch.rand(2, 3, 50, 70)).shape == (2, 7, 50, 70)  # padded to 64 × 96, cropped back


@pytest.mark.parametrize(
    "arch, encoder, message",
    [
        (
            "Unett",
            "resnet18",
            r"backbone\.arch=Unett: smp has no such architecture; it has Unet, UnetPlusPlus",
        ),
        ("Unet", "resnet19", r"backbone\.encoder_name=resnet19: smp has no such encoder; it has resnet18"),
        ("FPN", "tu-resnet19x", r"timm has no model 'resnet19x'"),
    ],
)
def test_unknown_names_list_the_valid_ones(arch, encoder, message):
    with pytest.raises(InvalidInputError, match=message):
        SmpSegmentation(arch, encoder, out_channels=4)


def test_encoder_weights_come_from_a_file_and_never_from_the_network(tmp_path):
    with pytest.raises(InvalidInputError, match=r"backbone\.options\.encoder_weights: dsc sets it"):
        SmpSegmentation("Unet", "resnet18", out_channels=4, options={"encoder_weights": "imagenet"})
    source = SmpSegmentation("Unet", "resnet18", out_channels=4)
    path = tmp_path / "resnet18.pth"
    torch.save(source.network.encoder.state_dict(), path)
    loaded = SmpSegmentation("FPN", "resnet18", out_channels=9, weights=str(path))
    for key, value in source.network.encoder.state_dict().items():
        assert torch.equal(loaded.network.encoder.state_dict()[key], value), key
    with pytest.raises(MissingFileError, match=r"missing\.pth does not exist.*get_encoder\('resnet34'"):
        SmpSegmentation("Unet", "resnet34", out_channels=4, weights=str(tmp_path / "missing.pth"))
    with pytest.raises(
        InvalidInputError, match=r"resnet18\.pth lacks 96 weights of resnet34, e\.g\. layer1\.2\."
    ):
        SmpSegmentation("Unet", "resnet34", out_channels=4, weights=str(path))  # resnet18's file
    with pytest.raises(
        InvalidInputError, match=r"another encoder than mobilenet_v2: its key conv1\.weight is"
    ):
        SmpSegmentation("Unet", "mobilenet_v2", out_channels=4, weights=str(path))
