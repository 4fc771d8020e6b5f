"""The discriminative loss of De Brabandere, Neven & Van Gool (2017), "Semantic Instance
Segmentation with a Discriminative Loss Function", Eq. 1–4, batched over images and instances.

For an image with C clusters, cluster c of N_c pixels x_i with mean μ_c, on raw (not normalised)
embeddings:

* variance (pull): L_var = 1/C Σ_c 1/N_c Σ_{i∈c} [‖μ_c − x_i‖ − δ_v]₊²
* distance (push): L_dist = 1/(C(C − 1)) Σ_{c≠c'} [2δ_d − ‖μ_c − μ_c'‖]₊²
* regularisation:  L_reg = 1/C Σ_c ‖μ_c‖
* L = α L_var + β L_dist + γ L_reg, with the paper's δ_v = 0.5, δ_d = 1.5, α = β = 1, γ = 0.001.

Background: the paper embeds object pixels only and takes the background from a semantic mask.
dsc's rounding partitions whole images (background is a segment, as in the spectral loss's
adjacency), so by default background (id 0) is one more cluster; ``background="ignore"`` leaves its
pixels out, the paper's setting. Void pixels are always left out. An image with one cluster has no
distance term (0); an image without valid pixels is skipped; no term is ever NaN (distances are
clamped away from 0, where the norm's gradient is undefined).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dsc.contracts import Batch, Head, NetworkOutputs
from dsc.labels import BACKGROUND
from dsc.losses.closed_form import mean_over_images
from dsc.losses.spectral import pixels_by_image
from dsc.ops.grouping import instance_sums

BACKGROUNDS = ("cluster", "ignore")
_MIN_SQUARED_DISTANCE = 1e-12  # ‖·‖ = sqrt(max(‖·‖², this)): a finite gradient where points coincide


def _norm(vectors: Tensor) -> Tensor:
    """Euclidean norm over the last dimension, with a zero (not NaN) gradient at 0."""
    return vectors.square().sum(dim=-1).clamp(min=_MIN_SQUARED_DISTANCE).sqrt()


def discriminative_terms(
    embeddings: Tensor,
    labels: Tensor,
    ignore_index: int = 255,
    delta_var: float = 0.5,
    delta_dist: float = 1.5,
    background: str = "cluster",
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The three terms of every image: (variance, distance, regularisation, has_pixels), each (B,).

    embeddings: (B, d, H, W) raw embeddings; labels: (B, H, W) instance ids, ``ignore_index`` void.
    """
    points, flat = pixels_by_image(embeddings, labels)  # (B, n, d), (B, n)
    dim = points.shape[-1]
    valid = flat != ignore_index
    if background == "ignore":
        valid &= flat != BACKGROUND
    points = torch.where(valid.unsqueeze(-1), points, 0.0)
    sums, sizes, slots = instance_sums(points, flat, valid)  # row K: the left-out pixels
    clusters = sums.shape[1] - 1
    means = sums / sizes.clamp(min=1).unsqueeze(-1)  # (B, K + 1, d)
    present = sizes[:, :clusters] > 0  # (B, K)
    count = present.sum(dim=1).to(points.dtype)  # C per image

    # Pull: each pixel towards its cluster's mean, averaged per cluster, then over clusters.
    own_mean = means.gather(1, slots.unsqueeze(-1).expand(-1, -1, dim))
    pull = (_norm(own_mean - points) - delta_var).clamp(min=0).square() * valid
    per_cluster = torch.zeros_like(sizes).scatter_add_(1, slots, pull)[:, :clusters]
    per_cluster = per_cluster / sizes[:, :clusters].clamp(min=1)
    variance = per_cluster.sum(dim=1) / count.clamp(min=1)

    # Push: every ordered pair of distinct present clusters.
    cluster_means = means[:, :clusters]
    between = _norm(cluster_means.unsqueeze(2) - cluster_means.unsqueeze(1))  # (B, K, K)
    pairs = present.unsqueeze(2) & present.unsqueeze(1)
    pairs &= ~torch.eye(clusters, dtype=torch.bool, device=flat.device)
    push = ((2 * delta_dist - between).clamp(min=0).square() * pairs).sum(dim=(1, 2))
    distance = push / (count * (count - 1)).clamp(min=1)

    regularisation = (_norm(cluster_means) * present).sum(dim=1) / count.clamp(min=1)
    return variance, distance, regularisation, count > 0


class DiscriminativeLoss:
    """The discriminative loss as a ``dsc.contracts.Objective`` (``loss=discriminative``): trains
    the embedding head's raw outputs (round them with ``rounding=meanshift``, bandwidth δ_v).

    delta_var (δ_v), delta_dist (δ_d): the pull and push margins; var_weight, dist_weight,
    reg_weight: α, β, γ; background: ``cluster`` or ``ignore`` (module docstring); unit: train
    unit-normalised embeddings instead (then means are at most 2 apart, so 2δ_d must be ≤ 2).
    Returns the mean over images of α L_var + β L_dist + γ L_reg; validation reports the same.
    """

    heads: frozenset[Head] = frozenset({"embedding"})

    def __init__(
        self,
        delta_var: float = 0.5,
        delta_dist: float = 1.5,
        var_weight: float = 1.0,
        dist_weight: float = 1.0,
        reg_weight: float = 0.001,
        background: str = "cluster",
        unit: bool = False,
        ignore_index: int = 255,
    ) -> None:
        if not 0 <= delta_var < delta_dist:
            raise ValueError(f"need 0 <= delta_var < delta_dist, got {delta_var} and {delta_dist}")
        if min(var_weight, dist_weight, reg_weight) < 0:
            raise ValueError("the weights var_weight, dist_weight and reg_weight must be >= 0")
        if background not in BACKGROUNDS:
            raise ValueError(f"background must be one of {', '.join(BACKGROUNDS)}, got {background!r}")
        if unit and 2 * delta_dist > 2:
            raise ValueError(
                f"unit=true with delta_dist={delta_dist}: unit vectors are at most 2 apart, so the push "
                f"margin 2·delta_dist = {2 * delta_dist} can never be met; set delta_dist <= 1 or unit=false"
            )
        self.delta_var, self.delta_dist = delta_var, delta_dist
        self.weights = (var_weight, dist_weight, reg_weight)
        self.background, self.unit, self.ignore_index = background, unit, ignore_index
        self.embedding_space: str | None = "unit" if unit else "raw"

    def __call__(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """The loss of (B, d, H, W) embeddings (raw, or unit with ``unit``) and (B, H, W) labels."""
        with torch.autocast(embeddings.device.type, enabled=False):
            variance, distance, regularisation, has_pixels = discriminative_terms(
                embeddings.float(),
                labels,
                self.ignore_index,
                self.delta_var,
                self.delta_dist,
                self.background,
            )
        alpha, beta, gamma = self.weights
        return mean_over_images(alpha * variance + beta * distance + gamma * regularisation, has_pixels)

    def _embeddings(self, outputs: NetworkOutputs) -> Tensor:
        return outputs.embeddings if self.unit else outputs.embedding_head

    def training_loss(
        self, outputs: NetworkOutputs, batch: Batch, generator: torch.Generator | None = None
    ) -> Tensor:
        return self(self._embeddings(outputs), batch["instances"])

    def validation_loss(self, outputs: NetworkOutputs, batch: Batch) -> Tensor:
        return self(self._embeddings(outputs), batch["instances"])

    def __repr__(self) -> str:
        alpha, beta, gamma = self.weights
        return (
            f"DiscriminativeLoss(delta_var={self.delta_var}, delta_dist={self.delta_dist}, "
            f"var_weight={alpha}, dist_weight={beta}, reg_weight={gamma}, background={self.background!r}, "
            f"unit={self.unit})"
        )
