"""A trained network as ONNX: ``DeployedNetwork`` (backbone and heads as one module) and
``export_onnx``, which writes it with the run's record in the file's metadata.

The file holds the network as deployed: input ``images`` (B, 3, H, W) float32 in [0, 1], outputs
``embeddings`` (B, d, H, W), unit-normalised per pixel (the raw embedding instead for a model whose
rounding reads it, ``rounding.embedding=raw``: the discriminative loss's mean-shift), and/or
``class_logits`` (B, C, H, W), with batch, height and width dynamic. Its metadata (the run's config
and class names, under the keys of ``dsc.training.checkpoint_record``) carry what rounding and
result files need, so that dsc rounds the outputs as the checkpoint would
(``dsc.deploy.onnx_runtime``).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dsc.contracts import Head, InvalidInputError, NetworkOutputs
from dsc.rounding import Rounding
from dsc.training.checkpoint_record import RunRecord

log = logging.getLogger(__name__)
EXPORT_EXTRA = 'pip install "dsc[export]" (onnx, onnxscript and onnxruntime)'


class DeployedNetwork(nn.Module):
    """A model's backbone and heads as one module: images (B, 3, H, W) → (embeddings, class
    logits), those the model has, embeddings unit-normalised (raw with ``raw_embeddings``)."""

    def __init__(self, backbone: nn.Module, embed_dim: int, raw_embeddings: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.embed_dim = embed_dim
        self.raw_embeddings = raw_embeddings

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        outputs = NetworkOutputs.split(self.backbone(images), self.embed_dim)
        heads = []
        if outputs.raw_embeddings is not None:
            heads.append(outputs.raw_embeddings if self.raw_embeddings else outputs.embeddings)
        if outputs.class_logits is not None:
            heads.append(outputs.class_logits)
        return tuple(heads)


def output_names(heads: frozenset[Head]) -> list[str]:
    """The ONNX outputs of a network with these heads, in ``DeployedNetwork``'s order."""
    return [
        name for head, name in (("embedding", "embeddings"), ("classes", "class_logits")) if head in heads
    ]


@contextlib.contextmanager
def _layers_entered(network: nn.Module) -> Iterator[list[str]]:
    """The qualified names of the modules whose forward is running, innermost last (hooks)."""
    stack: list[str] = []

    def entered(label: str) -> Callable[..., None]:
        def hook(*_: Any) -> None:
            stack.append(label)

        return hook

    def left(*_: Any) -> None:  # returns None: a forward hook's result would replace the output
        stack.pop()

    handles = []
    for name, module in network.named_modules():
        handles.append(
            module.register_forward_pre_hook(entered(f"{name or 'the network'} ({type(module).__name__})"))
        )
        handles.append(module.register_forward_hook(left))
    try:
        yield stack
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """Only warnings and errors from these loggers while the block runs."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _reason(error: Exception) -> str:
    """torch's reason for a failed export in one line: the summary of torch.onnx's report if it has
    one, else the message's first line (without terminal colours)."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(error).splitlines()]
    lines = [line for line in lines if line]
    if "## Exception summary" in lines:
        summary = lines[lines.index("## Exception summary") + 1 :]
        if summary:
            return summary[0]
    return lines[0] if lines else type(error).__name__


def export_onnx(
    model: Any,
    output: Path,
    record: RunRecord | None = None,
    image_size: tuple[int, int] = (64, 64),
    opset: int = 18,
) -> list[str]:
    """Write ``model`` (a ``DeepSpectralClustering``) to ``output`` as ONNX (see the module docstring);
    returns the output names. ``record``: the run's, stored in the metadata so that ``OnnxNetwork``
    rounds as the run did (without it the file holds the network alone). A network that cannot be
    traced raises ValueError naming the layer that was running and torch's reason."""
    try:
        import onnx
    except ImportError as error:
        raise ImportError(f"ONNX export needs the onnx packages: {EXPORT_EXTRA}") from error
    raw = isinstance(model.rounding, Rounding) and model.rounding.embedding == "raw"
    network = DeployedNetwork(model.backbone, model.embed_dim, raw_embeddings=raw).eval()
    names = output_names(model.heads)
    images = torch.rand(2, 3, *image_size)  # a batch of 1 would be specialised to 1
    dynamic = torch.export.Dim.DYNAMIC  # any size the network's operations allow
    progress = io.StringIO()  # torch.onnx prints its steps; onnx_ir logs each graph pass at INFO
    with (
        _layers_entered(network) as running,
        contextlib.redirect_stdout(progress),
        _quiet("onnx_ir", "onnxscript"),
    ):
        try:
            torch.onnx.export(
                network,
                (images,),
                str(output),
                input_names=["images"],
                output_names=names,
                dynamic_shapes=({0: dynamic, 2: dynamic, 3: dynamic},),
                opset_version=opset,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
        except OSError:  # the file system's reason (a full disk, a quota): the caller names the file
            raise
        except Exception as error:
            cause = error.__cause__ or error.__context__
            if isinstance(cause, OSError):
                raise cause from error
            layer = running[-1] if running else "none (the failure came after tracing, in the translation)"
            raise InvalidInputError(
                f"cannot export this network to ONNX: layer {layer} failed: {_reason(error)}. Export "
                "needs operations that torch.export can trace and ONNX can express, and no Python "
                "control flow that depends on pixel values"
            ) from error
    if record is not None:
        exported = onnx.load(str(output))
        for key, value in record.portable().items():
            exported.metadata_props.add(key=key, value=json.dumps(value))
        onnx.save(exported, str(output))
    return names
