"""The contracts between the LightningModule and what it is built from.

A network's (B, d + C, H, W) output is read as two heads (``NetworkOutputs``): d embedding channels,
unit-normalised per pixel, and C class-score channels (d or C may be 0). A loss (``Objective``)
says which heads it trains and computes its loss from them; a rounding (``Partitioner``) says which
heads it reads and turns them into a partition. ``DeepSpectralClustering`` checks at construction
that the network has the heads both need, and otherwise treats every model alike. ``dsc.predict``
segments with a ``Segmenter`` and writes each output format through ``PredictionFiles``.

What any layer raises for a mistake a person fixes — a missing file, an output that exists, a value
that cannot work — is a ``UserError`` whose message names the file, key or value and what to do.
Every ``python -m dsc.<entry>`` prints one as a single line and exits with code 2
(``dsc.cli.entry_point``; the traceback only with ``HYDRA_FULL_ERROR=1``). Each class is also the
built-in error of its kind, so Python callers catch them as ``FileNotFoundError``,
``FileExistsError`` or ``ValueError``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

import torch
from torch import Tensor

from dsc.ops.normalize import unit_normalize

if TYPE_CHECKING:  # instances are built from NetworkOutputs: a runtime import would be circular
    from dsc.instances import Instances

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

    @property
    def embedding_head(self) -> Tensor:
        """(B, d, H, W) embedding channels before normalisation; ValueError when there are none."""
        if self.raw_embeddings is None:
            raise ValueError("this network has no embedding head (model.embed_dim=0)")
        return self.raw_embeddings

    @cached_property
    def embeddings(self) -> Tensor:
        """(B, d, H, W) unit pixel vectors (``F.normalize`` over channels)."""
        return unit_normalize(self.embedding_head)

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

    ``training_loss`` is what the optimizer minimises; a loss that samples pixels draws them with
    ``generator`` (on the batch's device, seeded by the LightningModule), its one source of
    randomness. ``validation_loss`` is its exact value, reported as ``val/loss``. Both return a
    scalar tensor, never NaN for a batch without valid pixels. ``embedding_space``: the embeddings
    the loss shapes, ``unit`` (unit-normalised rows: their lengths carry nothing), ``raw`` (the
    head's outputs) or None (no embedding); a rounding of the other space cannot read them.
    """

    heads: frozenset[Head]
    embedding_space: str | None

    def training_loss(
        self, outputs: NetworkOutputs, batch: Batch, generator: torch.Generator | None = None
    ) -> Tensor: ...

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


class Segmenter(Protocol):
    """What ``dsc.predict`` segments with: a checkpoint's ``DeepSpectralClustering`` or an exported
    file's ``dsc.deploy.OnnxNetwork``. ``__call__``: images (B, 3, H, W) in [0, 1] → heads;
    ``partition``: heads → (B, H, W) segment labels, as ``Partitioner.partition``."""

    heads: frozenset[Head]
    num_classes: int

    def __call__(self, images: Tensor) -> NetworkOutputs: ...

    def partition(
        self,
        outputs: NetworkOutputs,
        generator: torch.Generator | None = None,
        image_area: Tensor | None = None,
    ) -> Tensor: ...


class PredictionFiles(Protocol):
    """One output format of ``dsc.predict`` (``dsc.outputs``): the files it will write for the
    inputs' stems (checked for clashes before any work), then one image at a time, then whatever
    it writes at the end.
    ``reads_instances`` / ``reads_features``: whether ``add`` needs the instances / the features
    (``predict`` computes them only then, else passes None)."""

    reads_instances: bool
    reads_features: bool

    def planned(self, stems: Sequence[str]) -> list[Path]: ...

    def add(
        self,
        source: Path,
        stem: str,
        image: Tensor,
        labels: Tensor,
        instances: Instances | None,
        features: Tensor | None = None,
    ) -> None:
        """image (3, H, W) in [0, 1]; labels (H, W) segment ids; instances: the image's instances;
        features (d, H, W): the embedding, or the class probabilities of a network without one."""

    def finish(self) -> None: ...


def heads_of(embed_dim: int, num_classes: int) -> frozenset[Head]:
    """The heads of a network with ``embed_dim`` embedding and ``num_classes`` class-score channels."""
    return frozenset(({"embedding"} if embed_dim else set()) | ({"classes"} if num_classes else set()))


def check_heads(available: frozenset[Head], needed: frozenset[Head], who: str) -> None:
    """Raise ValueError naming the config key that adds each head ``who`` needs and the network lacks."""
    missing = sorted(needed - available)
    if missing:
        keys = {"embedding": "model.embed_dim > 0", "classes": "model.num_classes > 0 (a class head)"}
        raise InvalidInputError(
            f"{who} needs the {' and '.join(missing)} head(s), which this network lacks: set "
            + " and ".join(keys[head] for head in missing)
        )


class UserError(Exception):
    """A mistake in what the user asked for, not a fault of dsc."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the command needs does not exist."""


class OutputExistsError(UserError, FileExistsError):
    """The command would replace or mix with something that exists."""


class WriteFailedError(UserError, OSError):
    """A file could not be written (a full disk, a quota, a file-size limit, no permission)."""


class InvalidInputError(UserError, ValueError):
    """A value, a file's contents or a combination of options that cannot work."""


@contextlib.contextmanager
def naming_failed_writes(path: Path) -> Iterator[None]:
    """Turn a write the file system refuses inside the block into ``WriteFailedError``, one line
    naming ``path`` and the system's reason (a full disk, a quota, a file-size limit, no permission)."""
    try:
        yield
    except OSError as error:
        if isinstance(error, UserError):
            raise
        raise WriteFailedError(f"cannot write {path}: {error.strerror or error}") from error


def user_error_of(error: BaseException) -> UserError | None:
    """``error`` itself, or the user error it wraps (Hydra wraps errors raised while instantiating
    a config in an ``InstantiationException``), or None."""
    while error is not None:
        if isinstance(error, UserError):
            return error
        error = error.__cause__
    return None
