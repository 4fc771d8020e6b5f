"""ONNX export of a trained network: ``python -m dsc.export ckpt_path=… output=model.onnx``, and
``OnnxNetwork``, which runs such a file in onnxruntime (``python -m dsc.predict … onnx=model.onnx``).

The file holds the network as deployed: input ``images`` (B, 3, H, W) float32 in [0, 1], outputs
``embeddings`` (B, d, H, W), unit-normalised per pixel, and/or ``class_logits`` (B, C, H, W), with
batch, height and width dynamic. Its metadata (``dsc_config``: the run's config; ``dsc_class_names``)
carry what rounding and result files need, so that dsc rounds the outputs as the checkpoint would.
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

import hydra
import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from dsc.contracts import Head, NetworkOutputs, Partitioner
from dsc.utils.console import print_config, quiet_console, where_things_went

log = logging.getLogger(__name__)
CONFIG_KEY, CLASS_NAMES_KEY = "dsc_config", "dsc_class_names"
EXPORT_EXTRA = 'pip install "dsc[export]" (onnx, onnxscript and onnxruntime)'


class DeployedNetwork(nn.Module):
    """A model's backbone and heads as one module: images (B, 3, H, W) → (embeddings, class
    logits), those the model has, embeddings unit-normalised."""

    def __init__(self, backbone: nn.Module, embed_dim: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.embed_dim = embed_dim

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        outputs = NetworkOutputs.split(self.backbone(images), self.embed_dim)
        heads = []
        if outputs.raw_embeddings is not None:
            heads.append(outputs.embeddings)
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
    model: Any, output: Path, image_size: tuple[int, int] = (64, 64), opset: int = 18
) -> list[str]:
    """Write ``model`` (a ``DeepSpectralClustering``) to ``output`` as ONNX (see the module docstring);
    returns the output names. A network that cannot be traced raises ValueError naming the layer
    that was running and torch's reason."""
    try:
        import onnx
    except ImportError as error:
        raise ImportError(f"ONNX export needs the onnx packages: {EXPORT_EXTRA}") from error
    network = DeployedNetwork(model.backbone, model.embed_dim).eval()
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
        except Exception as error:
            layer = running[-1] if running else "none (the failure came after tracing, in the translation)"
            raise ValueError(
                f"cannot export this network to ONNX: layer {layer} failed: {_reason(error)}. Export "
                "needs operations that torch.export can trace and ONNX can express, and no Python "
                "control flow that depends on pixel values"
            ) from error
    exported = onnx.load(str(output))
    metadata = {
        CONFIG_KEY: json.dumps(model.run_config or {}),
        CLASS_NAMES_KEY: json.dumps(model.class_names),
    }
    for key, value in metadata.items():
        exported.metadata_props.add(key=key, value=value)
    onnx.save(exported, str(output))
    return names


class OnnxNetwork:
    """An exported dsc network in onnxruntime on the CPU, with the rounding of its run (or
    ``rounding``): ``network(images)`` → ``NetworkOutputs``, ``network.partition(outputs)`` → labels,
    as ``DeepSpectralClustering`` gives them."""

    def __init__(self, path: str | Path, rounding: Any = None, threads: int = 0) -> None:
        try:
            import onnxruntime
        except ImportError as error:
            raise ImportError(f"running an ONNX file needs onnxruntime: {EXPORT_EXTRA}") from error
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX file {path} does not exist: write one with python -m dsc.export")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        try:
            self.session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:
            raise ValueError(f"onnxruntime cannot load {path}: {error}") from error
        metadata = self.session.get_modelmeta().custom_metadata_map
        if CONFIG_KEY not in metadata:
            raise ValueError(f"{path} was not written by python -m dsc.export (no {CONFIG_KEY} metadata)")
        self.run_config: dict[str, Any] = json.loads(metadata[CONFIG_KEY])
        self.class_names: list[str] | None = json.loads(metadata.get(CLASS_NAMES_KEY, "null"))
        self.embed_dim = int(self.run_config["model"]["embed_dim"])
        self.num_classes = int(self.run_config["model"].get("num_classes", 0))
        self.heads: frozenset[Head] = frozenset(
            ({"embedding"} if self.embed_dim else set()) | ({"classes"} if self.num_classes else set())
        )
        self.output_names = output_names(self.heads)
        self.rounding: Partitioner = hydra.utils.instantiate(
            self.run_config["rounding"] if rounding is None else rounding
        )

    def __call__(self, images: Tensor) -> NetworkOutputs:
        """images (B, 3, H, W) in [0, 1] → the heads, as torch tensors on the CPU."""
        arrays = self.session.run(self.output_names, {"images": images.float().cpu().numpy()})
        heads = dict(zip(self.output_names, (torch.from_numpy(np.asarray(a)) for a in arrays), strict=True))
        embeddings = heads.get("embeddings")
        # The file's embeddings are unit already; normalising them again changes nothing.
        return NetworkOutputs(embeddings, heads.get("class_logits"))

    def partition(
        self,
        outputs: NetworkOutputs,
        generator: torch.Generator | None = None,
        image_area: Tensor | None = None,
    ) -> Tensor:
        """The rounding's segment labels (B, H, W) of the outputs."""
        return self.rounding.partition(outputs, generator=generator, image_area=image_area)

    def to(self, device: torch.device) -> OnnxNetwork:
        if device.type != "cpu":
            raise ValueError(f"onnx=… runs on the CPU (onnxruntime's CPU provider), not {device}: device=cpu")
        return self


def export(cfg: DictConfig) -> Path:
    """Export ``cfg.ckpt_path``'s network to ``cfg.output``; refuses to replace a file unless
    ``cfg.overwrite``."""
    from dsc.checkpoints import load_model

    output = Path(cfg.output)
    if output.exists() and not cfg.overwrite:
        raise FileExistsError(
            f"{output} exists already: pass overwrite=true to replace it, or another output="
        )
    model, _ = load_model(cfg.ckpt_path)
    output.parent.mkdir(parents=True, exist_ok=True)
    names = export_onnx(model, output, tuple(cfg.image_size), cfg.opset)
    log.info("wrote %s (%.1f MB): images → %s", output, output.stat().st_size / 1e6, ", ".join(names))
    return output


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
def main(cfg: DictConfig) -> None:
    quiet_console()
    print_config(cfg, "export")
    output = export(cfg)
    log.info(
        where_things_went(
            [("ONNX file", output)],
            [f"python -m dsc.predict onnx={output} input=<image or folder> output=<folder>"],
        )
    )


if __name__ == "__main__":
    main()
