"""Real VOC and COCO samples for the tests, read in place (never copied) from ``DSC_TEST_DATA``.

``DSC_TEST_DATA`` names a folder holding ``voc/VOCdevkit/VOC2012`` (a VOC2012-format tree: JPEGImages,
SegmentationObject, SegmentationClass, ImageSets/Segmentation) and ``coco/`` (``images/`` and
``annotations.json`` in COCO's instances format); it defaults to ``../shared/data`` beside the
checkout. Tests that need a sample skip, saying where to put it, when it is missing.
"""

import os
from pathlib import Path

import pytest

SAMPLE_DATA = Path(os.environ.get("DSC_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
VOC_SAMPLE = SAMPLE_DATA / "voc" / "VOCdevkit" / "VOC2012"
COCO_SAMPLE = SAMPLE_DATA / "coco"


def _missing(path: Path, what: str) -> str:
    return f"needs {what} at {path}: set DSC_TEST_DATA to a folder holding it (see tests/sample_data.py)"


needs_voc = pytest.mark.skipif(
    not VOC_SAMPLE.is_dir(), reason=_missing(VOC_SAMPLE, "a VOC2012-format tree (a few images suffice)")
)
needs_coco = pytest.mark.skipif(
    not COCO_SAMPLE.is_dir(), reason=_missing(COCO_SAMPLE, "COCO images/ and annotations.json")
)
