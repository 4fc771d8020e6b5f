import pytest
import torch
import torch.nn.functional as F
import torchvision

from dsc.backbones import FCN8s, TorchvisionSegmentation, fcn8s, load_vgg16_weights
from dsc.backbones.fcn8 import VGG16_FILE, bilinear_kernel


def count(module):
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def vgg16_state(tmp_path_factory):
    """A state dict in torchvision's VGG16 layout (random values): stands in for the ImageNet file."""
    path = tmp_path_factory.mktemp("hub") / VGG16_FILE
    torch.save(torchvision.models.vgg16(weights=None).state_dict(), path)
    return path


def test_spectral_fcn8s_has_exactly_the_semantic_fcn8s_parameter_count():
    vgg = torchvision.models.vgg16(weights=None)
    backbone = count(vgg.features) + count(vgg.classifier[0]) + count(vgg.classifier[3])
    classes = 21
    head = (4096 + 512 + 256 + 3) * classes + (16 + 16 + 256) * classes * classes  # scores + up-sampling
    spectral, semantic = FCN8s(21, unit_normalize=True), FCN8s(21, unit_normalize=False)
    assert count(spectral) == count(semantic) == backbone + head == 134_489_759


@pytest.mark.parametrize("height,width", [(32, 32), (37, 53), (1, 1)])
def test_output_has_input_size_and_unit_rows(height, width):
    torch.manual_seed(0)
    model = FCN8s(out_channels=5).eval()
    out = model(torch.rand(2, 3, height, width))
    assert out.shape == (2, 5, height, width)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2, height, width))


def test_bilinear_upsampling_initialisation_matches_interpolate():
    upscore = torch.nn.ConvTranspose2d(1, 1, 4, stride=2, bias=False)
    upscore.weight.data.copy_(bilinear_kernel(1, 4))
    image = torch.rand(1, 1, 6, 6)
    # Cropped by 1 (as FCN's offsets do), it is bilinear interpolation away from the zero-padded edge.
    upsampled = upscore(image)[..., 1:-1, 1:-1]
    reference = F.interpolate(image, scale_factor=2, mode="bilinear")
    torch.testing.assert_close(upsampled[..., 1:-1, 1:-1], reference[..., 1:-1, 1:-1])


def test_imagenet_weights_load_into_convolutions_and_reshaped_fc_layers(vgg16_state, monkeypatch):
    state = torch.load(vgg16_state, weights_only=True)
    model = fcn8s(out_channels=21, weights="imagenet", weights_path=str(vgg16_state))
    assert torch.equal(model.features[0].weight, state["features.0.weight"])
    assert torch.equal(model.features[28].bias, state["features.28.bias"])
    assert torch.equal(model.fc6.weight.flatten(1), state["classifier.0.weight"])
    assert torch.equal(model.fc7.weight.flatten(1), state["classifier.3.weight"])
    # Without a path, the torch hub cache is where the weights are looked for.
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(vgg16_state.parent.parent))
    (vgg16_state.parent.parent / "checkpoints").mkdir(exist_ok=True)
    (vgg16_state.parent.parent / "checkpoints" / VGG16_FILE).write_bytes(vgg16_state.read_bytes())
    assert torch.equal(fcn8s(weights="imagenet").fc6.bias, state["classifier.0.bias"])


def test_missing_or_wrong_weights_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"IMAGENET1K_V1.*backbone\.weights_path"):
        load_vgg16_weights(FCN8s(3))
    torch.save({"something": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a torchvision VGG16 state dict"):
        load_vgg16_weights(FCN8s(3), tmp_path / "other.pth")
    with pytest.raises(ValueError, match="imagenet or null"):
        fcn8s(weights="coco")


@pytest.mark.parametrize("architecture", ["fcn_resnet50", "deeplabv3_resnet50", "lraspp_mobilenet_v3_large"])
def test_torchvision_backbones_give_d_unit_channels(architecture):
    model = TorchvisionSegmentation(architecture, out_channels=7).eval()
    out = model(torch.rand(1, 3, 48, 40))
    assert out.shape == (1, 7, 48, 40)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(1, 48, 40))


def test_torchvision_weights_are_copied_where_shapes_match(tmp_path):
    source = torchvision.models.segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None)
    torch.save(source.state_dict(), tmp_path / "lraspp.pth")
    model = TorchvisionSegmentation(
        "lraspp_mobilenet_v3_large", out_channels=4, weights_path=str(tmp_path / "lraspp.pth")
    )
    own = model.network.state_dict()
    copied = [k for k, v in source.state_dict().items() if own[k].shape == v.shape]
    assert all(torch.equal(own[k], source.state_dict()[k]) for k in copied)
    assert own["classifier.high_classifier.weight"].shape[0] == 4
    with pytest.raises(FileNotFoundError, match=r"nowhere\.pth"):
        TorchvisionSegmentation("lraspp_mobilenet_v3_large", weights_path=str(tmp_path / "nowhere.pth"))


def test_spectral_head_starts_off_the_stationary_point_and_semantic_head_at_zero():
    """F = 0 has zero spectral-loss gradient: the embedding network must not start there, whether it
    normalises itself or not (raw outputs start random too unless score_init=zero is asked for)."""
    from dsc.losses import spectral_loss

    torch.manual_seed(0)
    spectral = FCN8s(out_channels=4)
    embeddings = spectral(torch.rand(1, 3, 24, 24))
    loss = spectral_loss(embeddings, torch.randint(0, 3, (1, 24, 24)))
    loss.backward()
    assert spectral.score_fr.weight.grad.abs().sum() > 0
    assert FCN8s(out_channels=4, unit_normalize=False).score_fr.weight.any()
    semantic = FCN8s(out_channels=4, unit_normalize=False, score_init="zero")
    assert not semantic.score_fr.weight.any() and not semantic(torch.rand(1, 3, 8, 8)).any()


def test_configured_backbones_start_off_the_stationary_point_and_the_semantic_baseline_at_zero(tmp_path):
    """The configs leave normalisation to the module (raw outputs), yet the spectral FCN-8s must not
    start with zero scores; the semantic experiment keeps the original zero initialisation."""
    from hydra.utils import instantiate
    from hydra_configs import compose_config

    spectral = compose_config("train", tmp_path, "backbone=fcn8", "backbone.weights=null")
    semantic = compose_config("train", tmp_path, "experiment=voc_fcn8_semantic", "backbone.weights=null")
    assert instantiate(spectral.backbone).score_fr.weight.abs().sum() > 0
    assert not instantiate(semantic.backbone).score_fr.weight.any()
