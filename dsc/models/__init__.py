"""Embedding networks: (B, 3, H, W) images → (B, d, H, W) pixel embeddings."""

from dsc.models.fcn8 import FCN8s, fcn8s, load_vgg16_weights
from dsc.models.small_fcn import SmallFCN
from dsc.models.torchvision_segmentation import TorchvisionSegmentation

__all__ = ["FCN8s", "SmallFCN", "TorchvisionSegmentation", "fcn8s", "load_vgg16_weights"]
