"""Rounding a batch of embedding maps: (B, d, H, W) → (B, H, W) partitions, with options shared
by every scheme (semantic blocking, merging of small clusters)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from dsc.contracts import Head, NetworkOutputs
from dsc.rounding.hashing import position_ids
from dsc.rounding.kwikcluster import kwikcluster
from dsc.rounding.postprocess import merge_small_clusters, num_clusters

EMBEDDING_SPACES = ("unit", "raw")
Scheme = Callable[..., Tensor]  # (rows (B, N, d), generator=, mask=, pixel_ids=) → (B, N) labels


def round_embeddings(
    embeddings: Tensor,
    scheme: Scheme = kwikcluster,
    classes: Tensor | None = None,
    min_size: int = 0,
    generator: torch.Generator | None = None,
    image_area: Tensor | None = None,
) -> Tensor:
    """Round every image of a batch with one batched call of ``scheme`` per semantic block.

    embeddings: (B, d, H, W) pixel vectors (unit for the inner-product schemes).
    classes: optional (B, H, W) class map; when given, pixels are clustered only with pixels of
        their own class (semantic blocking).
    min_size: clusters smaller than this many pixels merge into their best neighbour (0: off).
    image_area: optional (B, H, W) bool, False on the padding of images smaller than the batch
        (``pad_collate``'s ``image_area``); padding is left out (label −1). With it, an image gets the
        same partition whatever batch it is padded into: the random order hashes each pixel's
        (row, column), not its index in the padded batch.
    Returns (B, H, W) int64 labels 0..k−1 per image (−1 on padding).
    """
    if embeddings.dim() != 4:
        raise ValueError(f"expected (B, d, H, W) embeddings, got shape {tuple(embeddings.shape)}")
    batch, _, height, width = embeddings.shape
    rows = embeddings.detach().float().flatten(2).transpose(1, 2)  # (B, N, d)
    if classes is None:
        blocks = [torch.ones(batch, height * width, dtype=torch.bool, device=rows.device)]
    else:
        if classes.shape != (batch, height, width):
            raise ValueError(
                f"classes {tuple(classes.shape)} do not match embeddings {tuple(embeddings.shape)}"
            )
        flat_classes = classes.flatten(1).to(rows.device)
        blocks = [flat_classes == value for value in torch.unique(flat_classes)]
    if image_area is not None:
        inside = image_area.reshape(batch, height * width).to(rows.device)
        blocks = [block & inside for block in blocks]
    pixel_ids = position_ids(height, width, rows.device)

    labels = torch.full((batch, height * width), -1, dtype=torch.int64, device=rows.device)
    if height * width == 0:
        return labels.view(batch, height, width)
    offset = torch.zeros(batch, 1, dtype=torch.int64, device=rows.device)
    for block in blocks:
        block_labels = scheme(rows, generator=generator, mask=block, pixel_ids=pixel_ids)
        block_labels = merge_small_clusters(rows, block_labels, min_size) if min_size > 1 else block_labels
        labels = torch.where(block, block_labels + offset, labels)
        offset = offset + block_labels.amax(dim=1, keepdim=True).clamp(min=-1) + 1
    return labels.view(batch, height, width)


class Rounding:
    """A rounding scheme with its options, as ``rounding=`` configs build it.

    embedding: which embeddings a ``Partitioner`` call rounds: ``unit`` (unit-normalised, what the
    spectral and contrastive losses train; KwikCluster's inner products) or ``raw`` (the head's
    outputs, what the discriminative loss trains; mean-shift's Euclidean balls).
    Call it with (B, d, H, W) embeddings (and a class map when ``semantic_blocking``) to get
    (B, H, W) labels; see ``round_embeddings``. As a ``dsc.contracts.Partitioner`` it reads the
    embedding head, and with ``semantic_blocking`` also the class head's predicted classes.
    """

    def __init__(
        self,
        scheme: Scheme = kwikcluster,
        semantic_blocking: bool = False,
        min_size: int = 0,
        embedding: str = "unit",
    ) -> None:
        if min_size < 0:
            raise ValueError(f"min_size must be >= 0, got {min_size}")
        if embedding not in EMBEDDING_SPACES:
            raise ValueError(f"embedding must be one of {', '.join(EMBEDDING_SPACES)}, got {embedding!r}")
        self.embedding = embedding
        self.scheme = scheme
        self.semantic_blocking = semantic_blocking
        self.min_size = min_size
        self.heads: frozenset[Head] = frozenset(
            {"embedding", "classes"} if semantic_blocking else {"embedding"}
        )

    def partition(
        self,
        outputs: NetworkOutputs,
        generator: torch.Generator | None = None,
        image_area: Tensor | None = None,
    ) -> Tensor:
        classes = outputs.predicted_classes if self.semantic_blocking else None
        embeddings = outputs.embeddings if self.embedding == "unit" else outputs.embedding_head
        return self(embeddings.detach(), classes, generator=generator, image_area=image_area)

    def __call__(
        self,
        embeddings: Tensor,
        classes: Tensor | None = None,
        generator: torch.Generator | None = None,
        image_area: Tensor | None = None,
    ) -> Tensor:
        if self.semantic_blocking and classes is None:
            raise ValueError(
                "rounding.semantic_blocking=true needs a class map: pass classes= (predicted classes)"
            )
        return round_embeddings(
            embeddings,
            self.scheme,
            classes=classes if self.semantic_blocking else None,
            min_size=self.min_size,
            generator=generator,
            image_area=image_area,
        )


class ClassArgmax:
    """The semantic baseline's "rounding": each pixel's highest-scoring class, so the partition
    has one segment per predicted class (the paper's FCN-8 row). Reads the class head."""

    heads: frozenset[Head] = frozenset({"classes"})

    def partition(
        self,
        outputs: NetworkOutputs,
        generator: torch.Generator | None = None,
        image_area: Tensor | None = None,
    ) -> Tensor:
        labels = outputs.predicted_classes
        return labels if image_area is None else labels.masked_fill(~image_area.to(labels.device), -1)


__all__ = ["ClassArgmax", "Rounding", "num_clusters", "round_embeddings"]
