"""A supervised pixel contrastive loss: SupCon (Khosla et al., 2020, Eq. 2, "L_out") over pixels
sampled in each image, with positives the pixels of the same instance (as in the pixel contrast
of Wang et al., 2021), on unit embeddings.

For an image, m pixels are drawn (``dsc.ops.sampling.sample_pixels``); with z_i their unit
embeddings, s_ij = z_i·z_j / τ and P(i) the other draws of i's instance,

    ℓ_i = −1/|P(i)| Σ_{p∈P(i)} log( exp(s_ip) / Σ_{a≠i} exp(s_ia) ),

averaged over the anchors with a positive, then over images. Background (id 0) is one more
instance, as in the spectral loss's adjacency; void pixels are never drawn. An image whose draws
have no positive pair (one pixel per instance) or no valid pixel is skipped; if none has one the
loss is a zero with a zero gradient, never NaN. Cost per image: O(m²·d), so an exact loss over all
n pixels would cost O(n²·d): training and validation both sample (validation with a fixed seed, so
its ``val/loss`` is comparable across epochs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dsc.contracts import Batch, Head, NetworkOutputs
from dsc.losses.closed_form import mean_over_images
from dsc.losses.spectral import pixels_by_image
from dsc.ops.grouping import instance_sums
from dsc.ops.sampling import SAMPLINGS, sample_pixels

VALIDATION_SEED = 0  # the validation sample's seed, the same every epoch


def supervised_contrastive(
    rows: Tensor, labels: Tensor, valid: Tensor, temperature: float
) -> tuple[Tensor, Tensor]:
    """(per-image loss (B,), whether the image has an anchor with a positive (B,)).

    rows: (B, m, d) unit embeddings of the drawn pixels; labels: (B, m) their instance ids;
    valid: (B, m) bool, False for draws of an image without valid pixels.

    The positives' sum needs no m × m matrix: Σ_{p∈P(i)} s_ip = z_i·(S_c − z_i)/τ with S_c the sum
    of the draws of i's instance c, so only the denominator's logsumexp is O(m²·d).
    """
    dim = rows.shape[-1]
    logits = rows @ rows.transpose(1, 2) / temperature  # (B, m, m)
    logits.diagonal(dim1=1, dim2=2).fill_(float("-inf"))  # a ≠ i
    log_denominator = torch.logsumexp(logits, dim=-1)  # (B, m)
    sums, sizes, slots = instance_sums(rows * valid.unsqueeze(-1), labels, valid)
    own_sum = sums.gather(1, slots.unsqueeze(-1).expand(-1, -1, dim))
    positives = (sizes.gather(1, slots) - 1) * valid  # |P(i)|
    positive_logits = (rows * (own_sum - rows)).sum(dim=-1) / temperature
    anchors = positives > 0
    per_anchor = log_denominator - positive_logits / positives.clamp(min=1)
    per_anchor = torch.where(anchors, per_anchor, 0.0)
    per_image = per_anchor.sum(dim=-1) / anchors.sum(dim=-1).clamp(min=1)
    return per_image, anchors.any(dim=-1)


class ContrastiveLoss:
    """The supervised pixel contrastive loss as a ``dsc.contracts.Objective``
    (``loss=contrastive``): trains the embedding head's unit embeddings (round them with
    ``rounding=kwikcluster``).

    temperature: τ; sample_size: m pixels drawn per image, with replacement; sampling: ``uniform``
    or ``balanced`` (each instance equally likely, ``sample_pixels``).
    """

    heads: frozenset[Head] = frozenset({"embedding"})
    embedding_space: str | None = "unit"

    def __init__(
        self,
        temperature: float = 0.1,
        sample_size: int = 1024,
        sampling: str = "uniform",
        ignore_index: int = 255,
    ) -> None:
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if sample_size < 2:
            raise ValueError(f"sample_size must be at least 2, got {sample_size}")
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}")
        self.temperature, self.sample_size, self.sampling = temperature, sample_size, sampling
        self.ignore_index = ignore_index

    def __call__(
        self, raw_embeddings: Tensor, labels: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """The loss of (B, d, H, W) embeddings (normalised here, the drawn pixels only) and
        (B, H, W) instance ids, drawing the pixels with ``generator``."""
        features, flat = pixels_by_image(raw_embeddings, labels)  # (B, n, d), (B, n)
        dim = features.shape[-1]
        if dim < 2:
            raise ValueError(
                "the contrastive loss needs model.embed_dim >= 2: unit vectors in one dimension are ±1"
            )
        picks = sample_pixels(flat, self.sample_size, self.sampling, self.ignore_index, generator)
        rows = features.gather(1, picks.unsqueeze(-1).expand(-1, -1, dim))
        picked = flat.gather(1, picks)
        valid = (flat != self.ignore_index).any(dim=1, keepdim=True).expand_as(picks)
        with torch.autocast(raw_embeddings.device.type, enabled=False):
            per_image, has_pairs = supervised_contrastive(
                F.normalize(rows.float(), dim=-1), picked, valid, self.temperature
            )
        return mean_over_images(per_image, has_pairs)

    def training_loss(
        self, outputs: NetworkOutputs, batch: Batch, generator: torch.Generator | None = None
    ) -> Tensor:
        return self(outputs.embedding_head, batch["instances"], generator)

    def validation_loss(self, outputs: NetworkOutputs, batch: Batch) -> Tensor:
        """On a sample drawn with a fixed seed (``VALIDATION_SEED``), the same every epoch."""
        raw = outputs.embedding_head
        generator = torch.Generator(device=raw.device).manual_seed(VALIDATION_SEED)
        return self(raw, batch["instances"], generator)

    def __repr__(self) -> str:
        return (
            f"ContrastiveLoss(temperature={self.temperature}, sample_size={self.sample_size}, "
            f"sampling={self.sampling!r})"
        )
