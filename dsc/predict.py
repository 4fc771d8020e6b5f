"""Instance masks for new images: ``python -m dsc.predict ckpt_path=… input=DIR_OR_IMAGE output=DIR``.

Writes, per image, ``<name>.png`` (instance ids in VOC's palette format: 0 the largest segment,
1 the next, …; segments beyond 254 share id 255) and ``<name>_overlay.png``. Files that are not
readable images are reported and skipped; the rest are still written.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
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
            return path, read_image(path, "skipped")
        except OSError as error:
            return path, str(error)


def _output_stems(paths: list[Path]) -> dict[Path, str]:
    """Output names: the input's stem, or its whole name where two inputs share a stem."""
    stems = [path.stem for path in paths]
    return {path: path.stem if stems.count(path.stem) == 1 else path.name for path in paths}


def write_prediction(image: torch.Tensor, labels: torch.Tensor, folder: Path, stem: str) -> None:
    """Save ``stem.png`` (palette-mode instance ids) and ``stem_overlay.png`` for one image."""
    ordered = order_by_size(labels).clamp(max=255)
    mask = Image.fromarray(ordered.byte().cpu().numpy(), mode="P")
    mask.putpalette(voc_palette().flatten().tolist())
    mask.save(folder / f"{stem}.png")
    Image.fromarray(overlay(image, ordered)).save(folder / f"{stem}_overlay.png")


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
            labels = model.rounding(model(images), generator=generator)
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
