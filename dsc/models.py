"""The former name of ``dsc.backbones``: the configs saved in checkpoints of dsc 0.1.0 name their
network ``dsc.models.<Network>``, and still load through this alias."""

from dsc.backbones import FCN8s, SmallFCN, TorchvisionSegmentation, fcn8s, load_vgg16_weights

__all__ = ["FCN8s", "SmallFCN", "TorchvisionSegmentation", "fcn8s", "load_vgg16_weights"]
