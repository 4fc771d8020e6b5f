"""Instance segmentation data in PASCAL VOC's conventions (0 background, 255 void)."""

from dsc.data.datamodule import InstanceDataModule
from dsc.data.labels import BACKGROUND, VOID
from dsc.data.shapes import Shapes

__all__ = ["BACKGROUND", "VOID", "InstanceDataModule", "Shapes"]
