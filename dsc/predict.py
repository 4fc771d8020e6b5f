"""Instance masks for new images: ``python -m dsc.predict ckpt_path=… input=DIR_OR_IMAGE output=DIR``.

Writes, per image, ``<name>.png`` (instance ids in VOC's palette format: 0 the largest segment,
1 the next, …) and ``<name>_overlay.png``. An image with more than 255 segments, more than a
palette holds, gets a 16-bit greyscale ``<name>.png`` of the same ids instead, with a warning.
Images are read upright (EXIF orientation) and at their precision (8- and 16-bit, grey, palette,
RGB, RGBA over black). Files that are not readable images are reported and skipped.

Nothing is overwritten unless ``overwrite=true``, and an input never: outputs that exist or that
would replace an input are listed before any work is done.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from dsc.checkpoints import load_model
from dsc.data.voc import read_image
from dsc.visualize import order_by_size, overlay, voc_palette

log = logging.getLogger(__name__)


def list_inputs(source: Path) -> list[Path]:
    """The files to segment: ``source`` itself, or every file directly inside the folder."""
    if source.is_file():
        return [source]
    if source.is_dir():
        files = sorted(path for path in source.iterdir() if path.is_file())
        if not files:
            raise FileNotFoundError(f"input folder {source} holds no files")
        return files
    raise FileNotFoundError(f"input {source} is neither an image file nor a folder")


class ImageFiles(Dataset):
    """Decoded images as (3, H, W) float in [0, 1], or the reason a file could not be read."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Path, torch.Tensor | str]:
        path = self.paths[index]
        try:
            return path, read_image(path, "skipped", exif_orientation=True)
        except OSError as error:
            return path, str(error)


def _output_stems(paths: list[Path]) -> dict[Path, str]:
    """Output names: the input's stem, or its whole name where two inputs share a stem."""
    stems = [path.stem for path in paths]
    return {path: path.stem if stems.count(path.stem) == 1 else path.name for path in paths}


def output_files(stem: str, folder: Path) -> list[Path]:
    """The files ``write_prediction`` writes for one image."""
    return [folder / f"{stem}.png", folder / f"{stem}_overlay.png"]


def check_outputs(inputs: list[Path], outputs: list[Path], overwrite: bool) -> None:
    """Refuse outputs that would replace an input (always) or an existing file (unless ``overwrite``)."""
    sources = {path.resolve() for path in inputs}
    clashes = [path for path in outputs if path.resolve() in sources]
    if clashes:
        raise FileExistsError(
            f"output={clashes[0].parent} would overwrite {len(clashes)} input image(s), e.g. {clashes[0]}: "
            "write the predictions to another folder (output=<dir>)"
        )
    existing = [path for path in outputs if path.exists()]
    if existing and not overwrite:
        shown = ", ".join(str(path) for path in existing[:3]) + (", …" if len(existing) > 3 else "")
        raise FileExistsError(
            f"{len(existing)} output file(s) exist already ({shown}): pass overwrite=true to replace "
            "them, or choose another output=<dir>"
        )


def write_prediction(image: torch.Tensor, labels: torch.Tensor, folder: Path, stem: str) -> None:
    """Save ``stem.png`` (palette-mode instance ids, or 16-bit ids beyond 255 segments) and
    ``stem_overlay.png`` for one image."""
    ordered = order_by_size(labels)
    mask_file, overlay_file = output_files(stem, folder)
    segments = int(ordered.max()) + 1
    if segments <= 255:  # ids 0..254: 255 is VOC's void colour
        mask = Image.fromarray(ordered.byte().cpu().numpy(), mode="P")
        mask.putpalette(voc_palette().flatten().tolist())
    else:
        if segments > 65536:
            raise ValueError(f"{stem}: {segments} segments, more than a 16-bit PNG can number")
        log.warning(
            "%s has %d segments, more than a palette PNG holds (255): writing %s as 16-bit instance ids",
            stem,
            segments,
            mask_file.name,
        )
        mask = Image.fromarray(ordered.cpu().numpy().astype(np.uint16))
    mask.save(mask_file)
    Image.fromarray(overlay(image, ordered)).save(overlay_file)


def _device(name: str) -> torch.device:
    """``auto`` is the GPU when there is one, else the CPU; anything else as torch spells it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@torch.inference_mode()
def predict(cfg: DictConfig) -> dict[str, int]:
    """Segment every input image; returns counts of ``written`` and ``skipped`` files."""
    device = _device(cfg.device)
    model, _ = load_model(cfg.ckpt_path, rounding=cfg.get("rounding"))
    model.to(device)
    generator = torch.Generator().manual_seed(cfg.seed)
    paths = list_inputs(Path(cfg.input))
    stems = _output_stems(paths)
    output = Path(cfg.output)
    check_outputs(paths, [f for path in paths for f in output_files(stems[path], output)], cfg.overwrite)
    output.mkdir(parents=True, exist_ok=True)

    loader = DataLoader(
        ImageFiles(paths), batch_size=cfg.batch_size, num_workers=cfg.num_workers, collate_fn=list
    )
    written, skipped = 0, 0
    for chunk in tqdm(loader, desc="predict", unit="batch"):
        readable = []
        for path, item in chunk:
            if isinstance(item, str):
                log.warning("skipping %s: not a readable image (%s)", path.name, item)
                skipped += 1
            else:
                readable.append((path, item))
        # One forward pass per image size within the chunk.
        for size in sorted({tuple(image.shape) for _, image in readable}):
            group = [(path, image) for path, image in readable if tuple(image.shape) == size]
            images = torch.stack([image for _, image in group]).to(device)
            labels = model.partition(model(images), generator=generator)
            for (path, image), image_labels in zip(group, labels, strict=True):
                write_prediction(image, image_labels, output, stems[path])
                written += 1
    log.info("wrote %d predictions to %s; skipped %d unreadable files", written, output, skipped)
    return {"written": written, "skipped": skipped}


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    log.info("predict config:\n%s", OmegaConf.to_yaml(cfg))
    predict(cfg)


if __name__ == "__main__":
    main()
