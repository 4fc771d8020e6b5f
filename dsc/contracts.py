"""The contracts between the LightningModule and what it is built from.

A network's (B, d + C, H, W) output is read as two heads (``NetworkOutputs``): d embedding channels,
unit-normalised per pixel, and C class-score channels (d or C may be 0). A loss (``Objective``)
says which heads it trains and computes its loss from them; a rounding (``Partitioner``) says which
heads it reads and turns them into a partition. ``DeepSpectralClustering`` checks at construction
that the network has the heads both need, and otherwise treats every model alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Literal, Protocol, runtime_checkable

import torch
from torch import Tensor

from dsc.ops.normalize import unit_normalize

Head = Literal["embedding", "classes"]
Batch = dict[str, Tensor]  # "image" (B, 3, H, W), "instances" and "classes" (B, H, W), optional extras


@dataclass(eq=False)
class NetworkOutputs:
    """One batch's network outputs, split into heads.

    raw_embeddings: (B, d, H, W) embedding channels before unit normalisation, or None (d = 0).
    class_logits: (B, C, H, W) class scores (logits; class 0 is background), or None (C = 0).
    """

    raw_embeddings: Tensor | None
    class_logits: Tensor | None

    @classmethod
    def split(cls, outputs: Tensor, embed_dim: int) -> NetworkOutputs:
        """(B, d + C, H, W) outputs → heads: the first ``embed_dim`` channels embed, the rest are
        class scores."""
        embeddings, logits = outputs[:, :embed_dim], outputs[:, embed_dim:]
        return cls(embeddings if embed_dim else None, logits if logits.shape[1] else None)

    @property
    def heads(self) -> frozenset[Head]:
        present = {"embedding": self.raw_embeddings, "classes": self.class_logits}
        return frozenset(name for name, tensor in present.items() if tensor is not None)  # type: ignore[misc]

    @cached_property
    def embeddings(self) -> Tensor:
        """(B, d, H, W) unit pixel vectors (``F.normalize`` over channels)."""
        if self.raw_embeddings is None:
            raise ValueError("this network has no embedding head (model.embed_dim=0)")
        return unit_normalize(self.raw_embeddings)

    @cached_property
    def class_probabilities(self) -> Tensor:
        """(B, C, H, W) softmax over the class scores, in float32."""
        if self.class_logits is None:
            raise ValueError("this network has no class head (model.num_classes=0)")
        return self.class_logits.float().softmax(dim=1)

    @cached_property
    def predicted_classes(self) -> Tensor:
        """(B, H, W) int64: each pixel's highest-scoring class."""
        if self.class_logits is None:
            raise ValueError("this network has no class head (model.num_classes=0)")
        return self.class_logits.argmax(dim=1)

    def detach(self) -> NetworkOutputs:
        def detached(tensor: Tensor | None) -> Tensor | None:
            return None if tensor is None else tensor.detach()

        return NetworkOutputs(detached(self.raw_embeddings), detached(self.class_logits))


@runtime_checkable
class Objective(Protocol):
    """A training loss. ``heads``: the heads it trains (the network must have them).

    ``training_loss`` is what the optimizer minimises (it may sample pixels: ``batch["pixel_sample"]``
    when the data module drew them); ``validation_loss`` is its exact value, reported as ``val/loss``.
    Both return a scalar tensor, never NaN for a batch without valid pixels.
    """

    heads: frozenset[Head]

    def training_loss(self, outputs: NetworkOutputs, batch: Batch) -> Tensor: ...

    def validation_loss(self, outputs: NetworkOutputs, batch: Batch) -> Tensor: ...


@runtime_checkable
class Partitioner(Protocol):
    """A rounding: network outputs → (B, H, W) int64 segment labels, 0..k−1 per image and −1 on the
    padding outside ``image_area`` ((B, H, W) bool, or None when no image is padded).
    ``heads``: the heads it reads. ``generator`` seeds any random choice (e.g. KwikCluster's pivots).
    """

    heads: frozenset[Head]

    def partition(
        self,
        outputs: NetworkOutputs,
        generator: torch.Generator | None = None,
        image_area: Tensor | None = None,
    ) -> Tensor: ...


def check_heads(available: frozenset[Head], needed: frozenset[Head], who: str) -> None:
    """Raise ValueError naming the config key that adds each head ``who`` needs and the network lacks."""
    missing = sorted(needed - available)
    if missing:
        keys = {"embedding": "model.embed_dim > 0", "classes": "model.num_classes > 0 (a class head)"}
        raise ValueError(
            f"{who} needs the {' and '.join(missing)} head(s), which this network lacks: set "
            + " and ".join(keys[head] for head in missing)
        )
