"""What dsc writes for people and tools, one module per format: pictures (``pictures``: drawing,
``validation_images``: during training, ``png``: ``dsc.predict``'s masks and overlays), COCO results
(``coco``), Cityscapes results (``cityscapes``) and the metrics table and file (``metrics_file``)."""

from dsc.outputs.cityscapes import CityscapesInstanceFiles
from dsc.outputs.coco import CocoPredictionFile, CocoResults
from dsc.outputs.png import PaletteMasks
from dsc.outputs.validation_images import ValidationImages

__all__ = ["CityscapesInstanceFiles", "CocoPredictionFile", "CocoResults", "PaletteMasks", "ValidationImages"]
