"""``OnnxNetwork``: a file of ``dsc.export`` in onnxruntime on the CPU, rounded as its run rounds
(``python -m dsc.predict onnx=model.onnx``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from torch import Tensor

from dsc.contracts import Head, InvalidInputError, NetworkOutputs, Partitioner, heads_of
from dsc.data.files import require_file
from dsc.deploy.onnx_export import EXPORT_EXTRA, output_names
from dsc.training.checkpoint_record import CLASS_NAMES, CONFIG, RunRecord, check_trusted


def record_of_metadata(metadata: dict[str, str], path: str | Path, trusted_targets: Any = ()) -> RunRecord:
    """The run record an ONNX file's metadata carry (each ``dsc_*`` entry a JSON text), checked as a
    checkpoint's is (``RunRecord.of``, ``check_trusted``, ``model_counts``); ``InvalidInputError``
    naming ``path`` and the entry for anything else."""
    if not isinstance(metadata, dict) or CONFIG not in metadata or CLASS_NAMES not in metadata:
        raise InvalidInputError(f"{path} was not written by python -m dsc.export (no {CONFIG} metadata)")
    saved = {}
    for key, value in metadata.items():
        if not key.startswith("dsc_"):
            continue
        try:
            saved[key] = json.loads(value)
        except (TypeError, ValueError, RecursionError) as error:  # not JSON, or nested past the stack
            raise InvalidInputError(
                f"{path}: its metadata {key} is not JSON of a record ({type(error).__name__})"
            ) from None
    record = RunRecord.of(saved, path)
    check_trusted(record.config, path, trusted_targets)
    record.model_counts(path)
    return record


class OnnxNetwork:
    """An exported dsc network in onnxruntime on the CPU, with the rounding of its run (or
    ``rounding``): ``network(images)`` → ``NetworkOutputs``, ``network.partition(outputs)`` → labels,
    as ``DeepSpectralClustering`` gives them."""

    def __init__(
        self, path: str | Path, rounding: Any = None, threads: int = 0, trusted_targets: Any = ()
    ) -> None:
        try:
            import onnxruntime
        except ImportError as error:
            raise ImportError(f"running an ONNX file needs onnxruntime: {EXPORT_EXTRA}") from error
        path = Path(path)
        require_file(path, f"ONNX file {path}", "write one with python -m dsc.export")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        try:
            self.session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:
            raise InvalidInputError(f"onnxruntime cannot load {path}: {error}") from error
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.record = record_of_metadata(metadata, path, trusted_targets)
        self.embed_dim, self.num_classes = self.record.model_counts(path)
        self.heads: frozenset[Head] = heads_of(self.embed_dim, self.num_classes)
        self.output_names = output_names(self.heads)
        self._check_graph(path)
        self.rounding: Partitioner = hydra.utils.instantiate(
            self.record.config["rounding"] if rounding is None else rounding
        )

    def _check_graph(self, path: Path) -> None:
        """Raise ``InvalidInputError`` naming ``path`` where the graph's input is not one image batch
        (B, 3, H, W) or its outputs are not the heads its metadata record: a name per head, each
        (B, channels, H, W) with d embedding and C class-score channels."""
        inputs = self.session.get_inputs()
        if (
            len(inputs) != 1
            or inputs[0].name != "images"
            or len(inputs[0].shape) != 4
            or inputs[0].shape[1] != 3
        ):
            found = ", ".join(f"{i.name} {i.shape}" for i in inputs)
            raise InvalidInputError(f"{path}: its graph input is {found}, not images (B, 3, H, W)")
        outputs = {output.name: output.shape for output in self.session.get_outputs()}
        channels = {"embeddings": self.embed_dim, "class_logits": self.num_classes}
        for name in self.output_names:
            shape = outputs.get(name)
            if shape is None:
                raise InvalidInputError(
                    f"{path}: its graph has no output {name}, which its metadata (d = {self.embed_dim}, "
                    f"C = {self.num_classes}) need; outputs: {', '.join(outputs) or 'none'}"
                )
            if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != channels[name]):
                raise InvalidInputError(
                    f"{path}: its graph output {name} has shape {shape}, where its metadata give "
                    f"(B, {channels[name]}, H, W)"
                )

    def __call__(self, images: Tensor) -> NetworkOutputs:
        """images (B, 3, H, W) in [0, 1] → the heads, as torch tensors on the CPU."""
        arrays = self.session.run(self.output_names, {"images": images.float().cpu().numpy()})
        heads = dict(zip(self.output_names, (torch.from_numpy(np.asarray(a)) for a in arrays), strict=True))
        embeddings = heads.get("embeddings")
        # Unit embeddings stay unit when normalised again; raw ones (a model rounded on its raw
        # embedding) are what NetworkOutputs expects.
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
            raise InvalidInputError(
                f"onnx=… runs on the CPU (onnxruntime's CPU provider), not {device}: device=cpu"
            )
        return self
