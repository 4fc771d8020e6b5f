"""FCN-8s (Long, Shelhamer & Darrell, 2015) on VGG16, as in the original ``voc-fcn8s`` model.

The paper's network: the semantic FCN-8s with its 21 class scores replaced by d embedding channels
and its softmax by a unit normalisation, so that with d = 21 it has exactly FCN-8s' parameters.
Topology as the original: conv1_1 padded by 100 so any input size works, fc6/fc7 as 7 × 7 and
1 × 1 convolutions, scores from pool4 and pool3 fused after 2× learned up-sampling, 8× up-sampling,
and crops at offsets 5, 9 and 31 that align each map with the input.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dsc.contracts import InvalidInputError, MissingFileError

# VGG16's convolutional configuration: channels per 3 × 3 convolution, "M" a 2 × 2 max-pool.
VGG16_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VGG16_FILE = "vgg16-397923af.pth"  # torchvision's VGG16_Weights.IMAGENET1K_V1
VGG16_URL = f"https://download.pytorch.org/models/{VGG16_FILE}"


def bilinear_kernel(channels: int, kernel_size: int) -> Tensor:
    """(channels, channels, k, k) weights that make a transposed convolution bilinear up-sampling."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    steps = torch.arange(kernel_size, dtype=torch.float32)
    profile = 1 - (steps - center).abs() / factor
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    weight[range(channels), range(channels)] = profile[:, None] * profile[None, :]
    return weight


class UnitNormalize(nn.Module):
    """Scale each pixel's vector to unit length: the paper's replacement of the softmax layer."""

    def forward(self, embeddings: Tensor) -> Tensor:
        return F.normalize(embeddings, dim=1)


class FCN8s(nn.Module):
    """FCN-8s ending in ``out_channels`` maps: (B, 3, H, W) images in [0, 1] → (B, out_channels, H, W).

    unit_normalize: end with ``UnitNormalize`` (the paper's embedding network); False gives raw
        outputs: class scores for a softmax, or embeddings that the caller normalises
        (``DeepSpectralClustering`` does, fusing it into the loss in training).
    score_init: ``random`` (small random score layers, for embeddings: F = 0 is a stationary point
        of the spectral loss, so zero layers never train an embedding) or ``zero`` (the original
        semantic FCN-8s, for class scores).
    Images are normalised with ImageNet's mean and standard deviation inside the network.
    """

    def __init__(
        self, out_channels: int = 21, unit_normalize: bool = True, score_init: str = "random"
    ) -> None:
        super().__init__()
        if score_init not in ("random", "zero"):
            raise InvalidInputError(f"score_init must be random or zero, got {score_init!r}")
        self.score_init = score_init
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        layers: list[nn.Module] = []
        in_channels = 3
        for index, item in enumerate(VGG16_LAYERS):
            if item == "M":
                layers.append(nn.MaxPool2d(2, stride=2, ceil_mode=True))
            else:
                layers += [
                    nn.Conv2d(in_channels, item, 3, padding=100 if index == 0 else 1),
                    nn.ReLU(inplace=True),
                ]
                in_channels = item
        self.features = nn.Sequential(*layers)  # same indices as torchvision's vgg16().features
        self.fc6 = nn.Conv2d(512, 4096, 7)
        self.fc7 = nn.Conv2d(4096, 4096, 1)
        self.dropout = nn.Dropout2d(0.5)
        self.score_fr = nn.Conv2d(4096, out_channels, 1)
        self.score_pool4 = nn.Conv2d(512, out_channels, 1)
        self.score_pool3 = nn.Conv2d(256, out_channels, 1)
        self.upscore2 = nn.ConvTranspose2d(out_channels, out_channels, 4, stride=2, bias=False)
        self.upscore_pool4 = nn.ConvTranspose2d(out_channels, out_channels, 4, stride=2, bias=False)
        self.upscore8 = nn.ConvTranspose2d(out_channels, out_channels, 16, stride=8, bias=False)
        # The layers of out_channels, fresh in a model initialised from another run's (model.init_from).
        self.last_layers = ("score_fr", "score_pool4", "score_pool3", "upscore2", "upscore_pool4", "upscore8")
        self.normalize = UnitNormalize() if unit_normalize else nn.Identity()
        self.reset_head()

    def reset_head(self) -> None:
        """Bilinear up-sampling, as the original. Score layers (``score_init``): zero for the semantic
        network (as the original); small random weights for embeddings, because F = 0 is a stationary
        point of the spectral loss (its gradient 4 (F Fᵀ − A) F vanishes there): zero would never train."""
        for score in (self.score_fr, self.score_pool4, self.score_pool3):
            if self.score_init == "random":
                nn.init.normal_(score.weight, std=0.01)
            else:
                nn.init.zeros_(score.weight)
            nn.init.zeros_(score.bias)
        for upscore in (self.upscore2, self.upscore_pool4, self.upscore8):
            upscore.weight.data.copy_(bilinear_kernel(upscore.in_channels, upscore.kernel_size[0]))

    def forward(self, images: Tensor) -> Tensor:
        height, width = images.shape[-2:]
        x = (images - self.mean) / self.std
        pool3 = self.features[:17](x)  # after the third max-pool, stride 8
        pool4 = self.features[17:24](pool3)  # stride 16
        pool5 = self.features[24:](pool4)  # stride 32
        x = self.dropout(F.relu(self.fc6(pool5), inplace=True))
        x = self.dropout(F.relu(self.fc7(x), inplace=True))
        upscore2 = self.upscore2(self.score_fr(x))
        score_pool4 = self.score_pool4(pool4)
        x = upscore2 + score_pool4[..., 5 : 5 + upscore2.shape[2], 5 : 5 + upscore2.shape[3]]
        upscore_pool4 = self.upscore_pool4(x)
        score_pool3 = self.score_pool3(pool3)
        x = upscore_pool4 + score_pool3[..., 9 : 9 + upscore_pool4.shape[2], 9 : 9 + upscore_pool4.shape[3]]
        x = self.upscore8(x)[..., 31 : 31 + height, 31 : 31 + width]
        return self.normalize(x)


def load_vgg16_weights(model: FCN8s, path: str | Path | None = None) -> FCN8s:
    """Copy torchvision's VGG16 ImageNet weights into ``model``: the 13 convolutions as they are,
    fc6 and fc7 reshaped from VGG's fully connected layers into convolutions (as FCN did).

    path: a ``vgg16-397923af.pth`` file; None looks in the torch hub cache
    (``$TORCH_HOME/hub/checkpoints``). Nothing is downloaded.
    """
    if path is None:
        path = Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILE
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(
            f"VGG16 ImageNet weights not found at {path}: on a machine with internet run "
            f"`python -c \"import torchvision; torchvision.models.vgg16(weights='IMAGENET1K_V1')\"` "
            f"(or download {VGG16_URL}) and copy the file there, or pass backbone.weights_path=<file>"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    required = [f"features.{i}.{kind}" for i in _conv_indices() for kind in ("weight", "bias")]
    required += [f"classifier.{i}.{kind}" for i in (0, 3) for kind in ("weight", "bias")]
    missing = [key for key in required if key not in state]
    if missing:
        raise InvalidInputError(
            f"{path} is not a torchvision VGG16 state dict: it lacks {', '.join(missing[:3])}"
        )
    with torch.no_grad():
        for index in _conv_indices():
            model.features[index].weight.copy_(state[f"features.{index}.weight"])
            model.features[index].bias.copy_(state[f"features.{index}.bias"])
        model.fc6.weight.copy_(state["classifier.0.weight"].view(4096, 512, 7, 7))
        model.fc6.bias.copy_(state["classifier.0.bias"])
        model.fc7.weight.copy_(state["classifier.3.weight"].view(4096, 4096, 1, 1))
        model.fc7.bias.copy_(state["classifier.3.bias"])
    return model


def _conv_indices() -> list[int]:
    """Positions of the convolutions in ``features`` (conv, ReLU pairs between pools)."""
    indices, position = [], 0
    for item in VGG16_LAYERS:
        if item == "M":
            position += 1
        else:
            indices.append(position)
            position += 2
    return indices


def fcn8s(
    out_channels: int = 21,
    unit_normalize: bool = True,
    weights: str | None = None,
    weights_path: str | None = None,
    score_init: str = "random",
) -> FCN8s:
    """Build FCN-8s for Hydra: ``weights=imagenet`` loads VGG16's ImageNet weights (see
    ``load_vgg16_weights``), ``weights=None`` starts from random convolutions."""
    model = FCN8s(out_channels, unit_normalize, score_init)
    if weights == "imagenet":
        load_vgg16_weights(model, weights_path)
    elif weights is not None:
        raise InvalidInputError(f"backbone.weights must be imagenet or null, got {weights!r}")
    return model
