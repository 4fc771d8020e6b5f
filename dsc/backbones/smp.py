"""segmentation_models_pytorch networks (Unet, FPN, DeepLabV3+, Segformer, … on its and timm's
encoders, by smp's own names) as dsc backbones: the last layer gives d + C channels.

Needs the optional extra: ``pip install "dsc[smp]"``. Nothing is downloaded: pretrained encoder
weights come from a file (``weights``).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dsc.backbones.fcn8 import IMAGENET_MEAN, IMAGENET_STD
from dsc.contracts import InvalidInputError, MissingFileError

PAD_TO = 32  # smp's encoders down-sample by 32: inputs are padded to a multiple of it


def _smp():
    try:
        import segmentation_models_pytorch
    except ImportError as error:
        raise InvalidInputError(
            'backbone=smp needs segmentation_models_pytorch: pip install "dsc[smp]"'
        ) from error
    return segmentation_models_pytorch


def fetch_command(encoder_name: str, output: str) -> str:
    """The command that saves ``encoder_name``'s ImageNet weights to ``output`` on a machine with
    internet (smp downloads them there)."""
    return (
        'python -c "import torch, segmentation_models_pytorch as smp; '
        f"torch.save(smp.encoders.get_encoder('{encoder_name}', weights='imagenet').state_dict(), "
        f"'{output}')\""
    )


def _check_names(smp, arch: str, encoder_name: str) -> None:
    architectures = smp.MODEL_ARCHITECTURES_MAPPING
    if arch.lower() not in architectures:
        names = ", ".join(model.__name__ for model in architectures.values())
        raise InvalidInputError(f"backbone.arch={arch}: smp has no such architecture; it has {names}")
    if encoder_name.startswith("tu-"):
        import timm

        if not timm.is_model(encoder_name[3:]):
            close = timm.list_models(f"*{encoder_name[3:].split('_')[0]}*")[:8]
            raise InvalidInputError(
                f"backbone.encoder_name={encoder_name}: timm has no model {encoder_name[3:]!r}"
                + (f"; close ones: {', '.join('tu-' + name for name in close)}" if close else "")
                + " (timm.list_models() lists them all)"
            )
    elif encoder_name not in smp.encoders.get_encoder_names():
        names = ", ".join(smp.encoders.get_encoder_names())
        raise InvalidInputError(
            f"backbone.encoder_name={encoder_name}: smp has no such encoder; it has {names}, and "
            "every timm model as tu-<name>"
        )


class SmpSegmentation(nn.Module):
    """``smp.create_model(arch, encoder_name, classes=out_channels)`` with random weights, or the
    encoder's from ``weights`` (a state dict file of that encoder, e.g. ``fetch_command``'s).

    forward: (B, 3, H, W) images in [0, 1], ImageNet-normalised here, padded to a multiple of 32
    and cropped back → (B, out_channels, H, W) raw scores (``DeepSpectralClustering`` normalises the
    embedding channels). ``options``: further keyword arguments of the architecture (smp's own).
    """

    def __init__(
        self,
        arch: str = "Unet",
        encoder_name: str = "resnet34",
        out_channels: int = 21,
        weights: str | None = None,
        options: dict | None = None,
    ) -> None:
        super().__init__()
        smp = _smp()
        _check_names(smp, arch, encoder_name)
        taken = sorted(set(options or {}) & {"encoder_name", "encoder_weights", "in_channels", "classes"})
        if taken:
            raise InvalidInputError(
                f"backbone.options.{taken[0]}: dsc sets it (encoder_name from backbone.encoder_name, "
                "classes from model.embed_dim + model.num_classes, encoder weights only from a file: "
                "backbone.weights=<file>)"
            )
        self.network = smp.create_model(
            arch, encoder_name=encoder_name, encoder_weights=None, in_channels=3, classes=out_channels,
            **dict(options or {}),
        )  # fmt: skip
        self.last_layers = ("network.segmentation_head",)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if weights is not None:
            self.load_encoder(weights, encoder_name)

    def load_encoder(self, path: str | Path, encoder_name: str) -> None:
        """Copy the encoder's weights from a state dict file; refuse another encoder's, naming the
        first key that does not fit."""
        path = Path(path)
        if not path.is_file():
            raise MissingFileError(
                f"backbone.weights={path} does not exist. On a machine with internet, save "
                f"{encoder_name}'s ImageNet weights with: {fetch_command(encoder_name, path.name)}"
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        own = self.network.encoder.state_dict()
        for key, value in state.items():
            if key not in own or own[key].shape != value.shape:
                found = (
                    "not in it"
                    if key not in own
                    else f"{tuple(value.shape)} there, {tuple(own[key].shape)} here"
                )
                raise InvalidInputError(
                    f"{path} holds weights of another encoder than {encoder_name}: its key {key} is {found}"
                )
        missing = [key for key in own if key not in state]
        if missing:
            raise InvalidInputError(
                f"{path} lacks {len(missing)} weights of {encoder_name}, e.g. {missing[0]}"
            )
        self.network.encoder.load_state_dict(state)

    def forward(self, images: Tensor) -> Tensor:
        height, width = images.shape[-2:]
        pad_h, pad_w = -height % PAD_TO, -width % PAD_TO
        normalized = (images - self.mean) / self.std
        # Always padded (by 0 pixels where none is needed): no branch on the size, so an exported
        # ONNX graph pads every size it is given.
        normalized = F.pad(normalized, (0, pad_w, 0, pad_h), mode="constant", value=0.0)
        return self.network(normalized)[..., :height, :width]
