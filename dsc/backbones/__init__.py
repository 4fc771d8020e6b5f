"""The networks dsc trains (``backbone=`` in the configs): (B, 3, H, W) images → (B, d + C, H, W)
embedding and class-score channels."""

from dsc.backbones.fcn8 import FCN8s, fcn8s, load_vgg16_weights
from dsc.backbones.small_fcn import SmallFCN
from dsc.backbones.torchvision_segmentation import TorchvisionSegmentation

__all__ = ["FCN8s", "SmallFCN", "TorchvisionSegmentation", "fcn8s", "load_vgg16_weights"]
