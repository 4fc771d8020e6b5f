"""``EmbeddingProjection``: a fixed view of embeddings as RGB colours (PCA fitted once)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from dsc.contracts import InvalidInputError


@dataclass(frozen=True)
class EmbeddingProjection:
    """A fixed view of d-dimensional embeddings as RGB: rows minus ``mean`` (d,) times ``axes``
    (d, k ≤ 3, the top principal directions, largest first), each stretched from ``low`` (k,) to
    ``high`` (k,) onto [0, 255]. Fitted once (on a run's validation embeddings, and stored with its
    checkpoints), it gives every image the same colours for the same embedding."""

    mean: Tensor
    axes: Tensor
    low: Tensor
    high: Tensor

    @classmethod
    def fit(cls, rows: Tensor, spread: float = 0.0) -> EmbeddingProjection:
        """Principal directions of (N, d) rows; the range of each projection, leaving out a
        ``spread`` share of the values at either end (0: the whole range)."""
        rows = rows.detach().double()
        mean = rows.mean(dim=0)
        centred = rows - mean
        _, eigenvectors = torch.linalg.eigh(centred.T @ centred)
        axes = eigenvectors[:, -min(3, rows.shape[1]) :].flip(-1)
        projected = centred @ axes
        if spread > 0:
            low, high = torch.quantile(
                projected, torch.tensor([spread, 1 - spread], dtype=projected.dtype), dim=0
            )
        else:
            low, high = projected.amin(dim=0), projected.amax(dim=0)
        return cls(mean.float(), axes.float(), low.float(), high.float())

    def rgb(self, embeddings: Tensor) -> np.ndarray:
        """A (d, H, W) embedding through the projection → (H, W, 3) uint8 (k < 3 pads with black)."""
        dim, height, width = embeddings.shape
        if dim != len(self.mean):
            raise InvalidInputError(
                f"the projection is of {len(self.mean)}-dimensional embeddings, not {dim}"
            )
        rows = embeddings.detach().float().flatten(1).T.cpu()
        scaled = ((rows - self.mean) @ self.axes - self.low) / (self.high - self.low).clamp(min=1e-12)
        rgb = torch.zeros(height * width, 3)
        rgb[:, : scaled.shape[1]] = scaled.clamp(0, 1)
        return (rgb * 255).round().byte().view(height, width, 3).numpy()

    def as_record(self) -> dict[str, list]:
        """Plain lists, for a checkpoint's record (``dsc.training.checkpoint_record``)."""
        return {name: getattr(self, name).tolist() for name in ("mean", "axes", "low", "high")}

    @classmethod
    def from_record(cls, record: dict[str, list]) -> EmbeddingProjection:
        return cls(
            *(torch.tensor(record[name], dtype=torch.float32) for name in ("mean", "axes", "low", "high"))
        )
