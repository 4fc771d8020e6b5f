"""Cityscapes' instance-level results format, as its evaluation scripts and server read it
(``cityscapesscripts.evaluation.evalInstanceLevelSemanticLabeling``): per image ``<name>.txt``
with one line per instance, ``masks/<name>_<k>.png <label id> <confidence>``, and the masks as
8-bit PNGs (255 on the instance, 0 elsewhere).

The text file takes the input image's name, so ``frankfurt_000000_000294_leftImg8bit.png``
gives ``frankfurt_000000_000294_leftImg8bit.txt``, which the scripts find by its
``<city>_<sequence>_<frame>`` prefix. Label ids are Cityscapes' own (``labels.py``'s ``id``, not
its train id): dsc's classes 1..8 are ``dsc.data.cityscapes.INSTANCE_LABEL_IDS``. An image
without instances gets an empty text file, which the scripts read as no predictions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from torch import Tensor

from dsc.data.cityscapes import INSTANCE_LABEL_IDS
from dsc.instances import Instances
from dsc.outputs.files import save_image, write_text

MASKS_FOLDER = "masks"


class CityscapesInstanceFiles:
    """Writes one image's instances at a time in Cityscapes' results format (see the module docstring).

    output: the results folder; label_ids[c − 1]: the Cityscapes label id of dsc class c.
    """

    reads_instances = True
    reads_features = False

    def __init__(self, output: Path, label_ids: Sequence[int] = INSTANCE_LABEL_IDS) -> None:
        self.output = Path(output)
        self.label_ids = list(label_ids)

    def planned(self, stems: Sequence[str]) -> list[Path]:
        """The text files, and the mask files of earlier results under the same names."""
        masks = self.output / MASKS_FOLDER
        earlier = [path for stem in stems for path in masks.glob(f"{stem}_*.png")] if masks.is_dir() else []
        return [self.output / f"{stem}.txt" for stem in stems] + earlier

    def add(
        self,
        source: Path,
        stem: str,
        image: Tensor,
        labels: Tensor,
        instances: Instances,
        features: Tensor | None = None,
    ) -> None:
        (self.output / MASKS_FOLDER).mkdir(parents=True, exist_ok=True)
        lines = []
        for index, (mask, klass, score) in enumerate(
            zip(instances.masks, instances.classes.tolist(), instances.scores.tolist(), strict=True)
        ):
            relative = f"{MASKS_FOLDER}/{stem}_{index}.png"
            save_image(
                Image.fromarray(mask.cpu().numpy().astype(np.uint8) * 255, mode="L"), self.output / relative
            )
            lines.append(f"{relative} {self.label_ids[klass - 1]} {score:.6f}\n")
        write_text(self.output / f"{stem}.txt", "".join(lines))

    def finish(self) -> None:
        """Every file is written by ``add``."""
