"""Instances of new images: ``python -m dsc.predict ckpt_path=… input=DIR_OR_IMAGE output=DIR``.

Output formats (``format=png``, ``coco``, ``cityscapes`` or a list, ``format=[png,coco]``):

* ``png`` (default): per image ``<name>.png``, instance ids in VOC's palette format (0 the largest
  segment, 1 the next, …; more than 255 segments: a 16-bit greyscale PNG of the same ids, with a
  warning) and ``<name>_overlay.png``.
* ``coco``: ``predictions_coco.json`` in COCO's results format and ``images_coco.json``, the
  images and categories it refers to (``dsc.outputs.coco.CocoPredictionFile``). Image ids are
  1, 2, … in the order of the sorted inputs and category ids dsc's class ids, unless ``data=coco``
  names the COCO data set the images belong to: then both are the data set's own ids.
* ``cityscapes``: Cityscapes' instance-level results format (``dsc.outputs.cityscapes``), for a
  model trained on Cityscapes (its data, or ``data=cityscapes``).

Instances carry a class and a score (``dsc.instances``; a model without a class head gives
class-agnostic instances of class 1, "object"). Overlays, COCO and Cityscapes files hold the instances
with a score of at least ``min_score`` and at least ``min_size`` pixels (``dsc.instances.thresholds``;
``min_score=0 min_size=0`` keeps all); the log says how many were dropped and why. ``<name>.png``
holds the whole partition. Images are read upright (EXIF orientation) and at
their precision (8- and 16-bit, grey, palette, RGB, RGBA over black); files that are not readable
images are reported and skipped. ``recursive=true`` also reads the images in sub-folders.

Nothing is overwritten unless ``overwrite=true``, and an input never: outputs that exist or that
would replace an input are listed before any work is done.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from dsc.cli.console import where_things_went
from dsc.cli.entry_point import entry_point
from dsc.contracts import InvalidInputError, MissingFileError, OutputExistsError, PredictionFiles, Segmenter
from dsc.data.cityscapes import CLASS_NAMES as CITYSCAPES_CLASSES
from dsc.data.coco import COCOInstances
from dsc.data.files import read_image
from dsc.data.statistics import TrainingImages
from dsc.deploy import OnnxNetwork
from dsc.instances import OBJECT, DroppedInstances, InstanceThresholds, predicted_instances
from dsc.ops.progress import progress
from dsc.outputs.cityscapes import CityscapesInstanceFiles
from dsc.outputs.coco import CocoPredictionFile
from dsc.outputs.files import input_written_by
from dsc.outputs.png import PaletteMasks
from dsc.training.checkpoint_record import RunRecord, load_model
from dsc.training.resume import refuse_training_run_directory

log = logging.getLogger(__name__)
FORMATS = ("png", "coco", "cityscapes")


def list_inputs(source: Path, recursive: bool = False) -> list[Path]:
    """The files to segment: ``source`` itself, or every file inside the folder (and, with
    ``recursive``, inside its sub-folders), sorted."""
    if source.is_file():
        return [source]
    if source.is_dir():
        candidates = source.rglob("*") if recursive else source.iterdir()
        files = sorted(path for path in candidates if path.is_file())
        if not files:
            raise MissingFileError(
                f"input folder {source} holds no files"
                + ("" if recursive else " (recursive=true also reads its sub-folders)")
            )
        return files
    raise MissingFileError(f"input {source} is neither an image file nor a folder")


class ImageFiles(Dataset):
    """Decoded images as (3, H, W) float in [0, 1], or the reason a file was not read: unreadable,
    a decompression bomb, or more than ``max_pixels`` pixels by its header (checked before decoding;
    ``predict.yaml`` holds the default)."""

    def __init__(self, paths: list[Path], max_pixels: int) -> None:
        self.paths = paths
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Path, torch.Tensor | str]:
        path = self.paths[index]
        try:
            with warnings.catch_warnings():  # max_pixels decides; PIL refuses twice its own limit
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as image:
                    width, height = image.size
        except Image.DecompressionBombError as error:
            return path, f"a decompression bomb ({error})"
        except (OSError, ValueError) as error:
            return path, f"cannot read image {path} ({error})"
        if width * height > self.max_pixels:
            return path, (
                f"{width}×{height} pixels, more than max_pixels={self.max_pixels} (pass max_pixels=… to "
                "predict it, if the machine's memory allows, or downscale it)"
            )
        try:
            return path, read_image(path, "skipped", exif_orientation=True)
        except OSError as error:
            return path, str(error)


def _output_stems(paths: list[Path]) -> dict[Path, str]:
    """Output names: the input's stem, or its whole name where two inputs share a stem, or its
    path joined with ``_`` where they share a name (in different sub-folders)."""
    stems = [path.stem for path in paths]
    names = [path.name for path in paths]

    def stem(path: Path) -> str:
        if stems.count(path.stem) == 1:
            return path.stem
        return path.name if names.count(path.name) == 1 else "_".join(path.parts[-3:])

    return {path: stem(path) for path in paths}


def check_outputs(inputs: list[Path], outputs: list[Path], overwrite: bool) -> None:
    """Refuse outputs that would replace an input (always) or an existing file (unless ``overwrite``)."""
    clash = input_written_by(outputs, inputs)
    if clash is not None:
        raise OutputExistsError(
            f"output={clash[0].parent} would overwrite an input ({clash[0]} is {clash[1]}): write the "
            "predictions to another folder (output=<dir>)"
        )
    existing = [path for path in outputs if path.exists()]
    if existing and not overwrite:
        shown = ", ".join(str(path) for path in existing[:3]) + (", …" if len(existing) > 3 else "")
        raise OutputExistsError(
            f"{len(existing)} output file(s) exist already ({shown}): pass overwrite=true to replace "
            "them, or choose another output=<dir>"
        )


def _device(name: str, onnx: bool = False) -> torch.device:
    """``auto`` is the GPU when there is one (the CPU for onnxruntime), else the CPU; anything else
    as torch spells it."""
    if name == "auto" and onnx:
        return torch.device("cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def output_formats(value: str | Sequence[str]) -> list[str]:
    """``format=`` as a list of format names; an unknown one raises ValueError naming it."""
    formats = [value] if isinstance(value, str) else list(value)
    unknown = [name for name in formats if name not in FORMATS]
    if unknown or not formats:
        raise InvalidInputError(
            f"format={value if isinstance(value, str) else list(value)}: "
            f"{', '.join(map(str, unknown)) or 'no format'} is not a format dsc.predict writes; "
            f"use one of {', '.join(FORMATS)} or a list of them (format=[png,coco])"
        )
    return list(dict.fromkeys(formats))


def _class_names(model: Segmenter, record: RunRecord) -> list[str]:
    """The names of the model's classes (class 0 first): the training data's, else "class c"."""
    if record.class_names is not None and len(record.class_names) == model.num_classes:
        return list(record.class_names)
    return ["background"] + [f"class {c}" for c in range(1, model.num_classes)]


def coco_file(
    model: Segmenter, record: RunRecord, output: Path, dataset: Any, paths: list[Path]
) -> CocoPredictionFile:
    """``format=coco``'s writer; ``dataset`` (``data=coco``'s validation set, or None) gives the ids."""
    if "classes" not in model.heads:
        if dataset is not None:
            raise InvalidInputError(
                "format=coco with data=coco needs a model with a class head (model.num_classes > 0): "
                "this one has none, so its instances have no COCO category"
            )
        return CocoPredictionFile(output, [{"id": OBJECT, "name": "object"}])
    names = _class_names(model, record)
    if dataset is None:
        return CocoPredictionFile(output, [{"id": c, "name": n} for c, n in enumerate(names) if c > 0])
    if not isinstance(dataset, COCOInstances):
        raise InvalidInputError(
            f"format=coco takes image and category ids from a COCO data set (data=coco); "
            f"data={type(dataset).__name__} has none: leave data out to number them 1, 2, …"
        )
    if len(dataset.class_names) != model.num_classes:
        raise InvalidInputError(
            f"the model has {model.num_classes} classes but {dataset.annotation_file} has "
            f"{len(dataset.class_names) - 1} categories and background: it was not trained on these data"
        )
    image_ids = {dataset.coco.imgs[i]["file_name"]: i for i in dataset.image_ids}
    unknown = [path.name for path in paths if path.name not in image_ids]
    if unknown:
        raise InvalidInputError(
            f"{len(unknown)} input image(s) are not among the images of {dataset.annotation_file} "
            f"(e.g. {', '.join(unknown[:3])}), so they have no COCO image id: predict the data set's "
            "own images, or leave data out to number the images 1, 2, …"
        )
    return CocoPredictionFile(output, dataset.categories, image_ids, dataset.category_of_class)


def cityscapes_files(
    model: Segmenter, record: RunRecord, output: Path, data_target: str | None
) -> CityscapesInstanceFiles:
    """``format=cityscapes``'s writer, for a model with Cityscapes' 8 instance classes."""
    trained_on = record.config["data"]["val"]["_target_"]
    on_cityscapes = "CityscapesInstances" in str(data_target or trained_on)
    if model.num_classes != len(CITYSCAPES_CLASSES) or not on_cityscapes:
        raise InvalidInputError(
            "format=cityscapes writes Cityscapes label ids, which need a model with a class head "
            f"trained on Cityscapes' {len(CITYSCAPES_CLASSES) - 1} instance classes (data=cityscapes, "
            f"model.num_classes={len(CITYSCAPES_CLASSES)}); this one has model.num_classes="
            f"{model.num_classes} and was trained on {trained_on}"
        )
    return CityscapesInstanceFiles(output)


def load_segmenter(
    ckpt_path: str | None,
    onnx: str | None,
    rounding: Any,
    device: torch.device,
    trusted_targets: Sequence[str] = (),
) -> tuple[Segmenter, RunRecord]:
    """The checkpoint's model on ``device``, or the ONNX file's network in onnxruntime (CPU), and the
    record of the run that trained it (``trusted_targets``: see ``dsc.training.checkpoint_record``)."""
    if (ckpt_path is None) == (onnx is None):
        raise InvalidInputError(
            "pass either ckpt_path=<run>/checkpoints/last.ckpt (the network in torch) or "
            "onnx=<file>.onnx (the exported network in onnxruntime), not "
            + ("both" if ckpt_path is not None else "neither")
        )
    if onnx is not None:
        network = OnnxNetwork(onnx, rounding, trusted_targets=trusted_targets)
        return network.to(device), network.record
    model, record = load_model(ckpt_path, rounding=rounding, trusted_targets=trusted_targets)
    return model.to(device), record


def _writable(output: Path) -> None:
    """Create ``output`` or raise naming it and why it cannot hold the predictions."""
    try:
        output.mkdir(parents=True, exist_ok=True)
        probe = output / ".dsc_write_test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise OSError(
            f"output={output} cannot hold the predictions ({error.strerror or error}): choose another "
            "output=<dir>"
        ) from error


@torch.inference_mode()
def predict(cfg: DictConfig) -> dict[str, int]:
    """Segment every input image; returns counts of ``written`` and ``skipped`` files and of the
    instances ``dropped`` by the thresholds."""
    for folder, key in ((Path(cfg.paths.output_dir), "hydra.run.dir"), (Path(cfg.output), "output")):
        refuse_training_run_directory(folder, key, "dsc.predict")
    formats = output_formats(cfg.format)
    dropped = DroppedInstances(InstanceThresholds(cfg.min_score, cfg.min_size))
    paths = list_inputs(Path(cfg.input), cfg.get("recursive", False))  # before the model is read
    device = _device(cfg.device, onnx=cfg.get("onnx") is not None)
    model, record = load_segmenter(
        cfg.get("ckpt_path"), cfg.get("onnx"), cfg.get("rounding"), device, cfg.trusted_targets
    )
    generator = torch.Generator().manual_seed(cfg.seed)
    stems = _output_stems(paths)
    output = Path(cfg.output)
    data = cfg.get("data")
    dataset = hydra.utils.instantiate(data.val) if data is not None and "coco" in formats else None
    writers: list[PredictionFiles] = []
    for name in formats:
        if name == "png":
            names = _class_names(model, record) if "classes" in model.heads else ["background", "object"]
            writers.append(
                PaletteMasks(output, cfg.side_by_side, cfg.embedding, names, record.projection,
                             record.training_images, dropped.thresholds)
            )  # fmt: skip
        elif name == "coco":
            writers.append(coco_file(model, record, output, dataset, paths))
        else:
            writers.append(
                cityscapes_files(model, record, output, None if data is None else data.val._target_)
            )
    planned = [file for writer in writers for file in writer.planned([stems[path] for path in paths])]
    model_files = [Path(p) for p in (cfg.get("ckpt_path"), cfg.get("onnx")) if p is not None]
    check_outputs([*paths, *model_files], planned, cfg.overwrite)
    _writable(output)
    reads_instances = any(writer.reads_instances for writer in writers)
    reads_features = any(writer.reads_features for writer in writers)

    loader = DataLoader(
        ImageFiles(paths, cfg.max_pixels),
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        collate_fn=list,
    )
    written, skipped, far = 0, 0, 0
    for chunk in progress(loader, desc="predict", unit="batch"):
        readable = []
        for path, item in chunk:
            if isinstance(item, str):
                log.warning("skipping %s: %s", path.name, item)
                skipped += 1
            else:
                readable.append((path, item))
                far += _far_from_training(path, item, record.training_images, warned=far > 0)
        # One forward pass per image size within the chunk.
        for size in sorted({tuple(image.shape) for _, image in readable}):
            group = [(path, image) for path, image in readable if tuple(image.shape) == size]
            images = torch.stack([image for _, image in group]).to(device)
            outputs = model(images)
            labels = model.partition(outputs, generator=generator)
            instances = [None] * len(group)
            if reads_instances:
                instances = [dropped.apply(found) for found in predicted_instances(labels, outputs)]
            features = None
            if reads_features:
                features = outputs.embeddings if "embedding" in model.heads else outputs.class_probabilities
            for position, ((path, image), image_labels, image_instances) in enumerate(
                zip(group, labels, instances, strict=True)
            ):
                image_features = None if features is None else features[position]
                for writer in writers:
                    writer.add(path, stems[path], image, image_labels, image_instances, image_features)
                written += 1
    if written == 0:
        raise InvalidInputError(
            f"input={cfg.input} gave nothing to predict: {skipped} file(s) skipped, each named above "
            "(not an image, unreadable, or larger than max_pixels)"
        )
    for writer in writers:
        writer.finish()
    log.info("wrote %d predictions (%s) to %s; skipped %d unreadable files", written, ", ".join(formats),
             output, skipped)  # fmt: skip
    if reads_instances:
        log.info("instances written: %s", dropped.summary())
    if far:
        titled = " (their overlays are titled so)" if "png" in formats and cfg.side_by_side else ""
        log.warning(
            "%d of %d input(s) are far from the training data %s: their predictions are unreliable%s",
            far, written, record.training_images.describe(), titled,
        )  # fmt: skip
    files = {
        "png": (
            "masks and overlays",
            output / ("<name>.png, <name>_overlay.png" + (", <name>_embedding.png" if cfg.embedding else "")),
        ),
        "coco": ("COCO results", output / "predictions_coco.json"),
        "cityscapes": ("Cityscapes results", output / "<name>.txt, masks/"),
    }
    next_steps = (
        ["pycocotools: COCO('images_coco.json').loadRes('predictions_coco.json')"]
        if "coco" in formats
        else []
    )
    log.info(where_things_went([files[name] for name in formats], next_steps))
    return {"written": written, "skipped": skipped, "dropped": dropped.dropped, "far": far}


def _far_from_training(
    path: Path, image: torch.Tensor, training: TrainingImages | None, warned: bool
) -> bool:
    """Whether ``image`` is far from the training images (``TrainingImages.far``); the first such
    input is named in a warning, the count comes at the end."""
    reason = None if training is None else training.far(image)
    if reason is not None and not warned:
        log.warning(
            "%s is far from the images the model was trained on, %s: %s. Its instances are "
            "unreliable; train on data like it (data=folder, data=voc, …)",
            path.name,
            training.describe(),
            reason,
        )
    return reason is not None


SKIPPED_EXIT_CODE = 3  # every readable input predicted, but some inputs skipped


@entry_point("predict")
def main(cfg: DictConfig) -> None:
    """``python -m dsc.predict``: exit code 0 when every input was predicted, 3 when some were
    skipped (named in the log), 2 for a mistake in the command."""
    counts = predict(cfg)
    if counts["skipped"]:
        log.warning("%d input(s) skipped: the exit code is %d", counts["skipped"], SKIPPED_EXIT_CODE)
        raise SystemExit(SKIPPED_EXIT_CODE)


if __name__ == "__main__":
    main()
