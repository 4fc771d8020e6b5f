"""The networks dsc trains (``backbone=`` in the configs): (B, 3, H, W) images → (B, d + C, H, W)
embedding and class-score channels."""

from dsc.backbones.convert import ConvertedSegmentation, HasLastLayers, convert, converted
from dsc.backbones.fcn8 import FCN8s, fcn8s, load_vgg16_weights
from dsc.backbones.small_fcn import SmallFCN
from dsc.backbones.smp import SmpSegmentation
from dsc.backbones.torchvision_segmentation import TorchvisionSegmentation

__all__ = [
    "ConvertedSegmentation",
    "FCN8s",
    "HasLastLayers",
    "SmallFCN",
    "SmpSegmentation",
    "TorchvisionSegmentation",
    "convert",
    "converted",
    "fcn8s",
    "load_vgg16_weights",
]
