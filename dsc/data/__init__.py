"""Instance segmentation data in PASCAL VOC's conventions (0 background, 255 void)."""

from dsc.data.cityscapes import CityscapesInstances
from dsc.data.coco import COCOInstances
from dsc.data.datamodule import InstanceDataModule, WithoutClasses
from dsc.data.folder import FolderInstances
from dsc.data.sbd import SBDInstances
from dsc.data.shapes import Shapes, ShapesStyle
from dsc.data.transforms import RandomScaleCropFlip, pad_collate
from dsc.data.voc import VOC_CLASSES, VOCInstances
from dsc.labels import BACKGROUND, VOID

__all__ = [
    "BACKGROUND",
    "VOC_CLASSES",
    "VOID",
    "COCOInstances",
    "CityscapesInstances",
    "FolderInstances",
    "InstanceDataModule",
    "RandomScaleCropFlip",
    "SBDInstances",
    "Shapes",
    "ShapesStyle",
    "VOCInstances",
    "WithoutClasses",
    "pad_collate",
]
