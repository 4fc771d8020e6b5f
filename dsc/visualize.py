"""Pictures of partitions and embeddings: uint8 RGB arrays, pure functions of tensors."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from dsc.data.labels import VOID


def voc_palette() -> np.ndarray:
    """PASCAL VOC's 256-colour palette (index 0 black, 255 the void colour), (256, 3) uint8."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for index in range(256):
        value, red, green, blue = index, 0, 0, 0
        for bit in range(8):
            red |= ((value >> 0) & 1) << (7 - bit)
            green |= ((value >> 1) & 1) << (7 - bit)
            blue |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        palette[index] = (red, green, blue)
    palette[VOID] = (224, 224, 192)
    return palette


def order_by_size(labels: Tensor) -> Tensor:
    """Renumber a (H, W) partition so that 0 is its largest segment, 1 the next, and so on (the
    largest segment is usually background, which VOC numbers 0). Ties keep the lower label first."""
    flat = labels.flatten().long()
    _, inverse, sizes = torch.unique(flat, return_inverse=True, return_counts=True)
    rank = torch.empty_like(sizes)
    rank[torch.argsort(-sizes, stable=True)] = torch.arange(len(sizes), device=sizes.device)
    return rank[inverse].view_as(labels)


def to_uint8_image(image: Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] → (H, W, 3) uint8."""
    return (image.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()


def overlay(image: Tensor, labels: Tensor, alpha: float = 0.55) -> np.ndarray:
    """Blend palette colours of a (H, W) partition over a (3, H, W) image in [0, 1], with the
    segment boundaries drawn in white. Label 0 (background) is left untinted. → (H, W, 3) uint8."""
    rgb = to_uint8_image(image).astype(np.float32)
    ids = labels.detach().cpu().long().numpy()
    colours = voc_palette()[np.where(ids == VOID, VOID, ids % 255)].astype(np.float32)
    tinted = ids != 0
    rgb[tinted] = (1 - alpha) * rgb[tinted] + alpha * colours[tinted]
    boundary = np.zeros_like(ids, dtype=bool)
    boundary[:, 1:] |= ids[:, 1:] != ids[:, :-1]
    boundary[1:, :] |= ids[1:, :] != ids[:-1, :]
    rgb[boundary] = 255
    return rgb.round().astype(np.uint8)


def embedding_rgb(embeddings: Tensor) -> np.ndarray:
    """A (d, H, W) embedding seen through its top three principal directions, each stretched to
    [0, 255]: pixels of one cluster share a colour. → (H, W, 3) uint8 (d < 3 pads with black)."""
    dim, height, width = embeddings.shape
    rows = embeddings.detach().double().flatten(1).T
    rows = rows - rows.mean(dim=0)
    _, eigenvectors = torch.linalg.eigh(rows.T @ rows)
    projected = rows @ eigenvectors[:, -min(3, dim) :].flip(-1)  # (N, ≤3), largest first
    low, high = projected.amin(dim=0), projected.amax(dim=0)
    scaled = (projected - low) / (high - low).clamp(min=1e-12)
    rgb = torch.zeros(height * width, 3, dtype=torch.float64)
    rgb[:, : scaled.shape[1]] = scaled
    return (rgb * 255).round().byte().view(height, width, 3).cpu().numpy()
