"""ONNX export of a trained network: ``python -m dsc.export ckpt_path=… output=model.onnx``.

The file's layout is ``dsc.deploy.onnx_export``'s; ``python -m dsc.predict onnx=model.onnx`` runs it
in onnxruntime (``dsc.deploy.OnnxNetwork``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from dsc.cli.console import where_things_went
from dsc.cli.entry_point import entry_point
from dsc.contracts import InvalidInputError, OutputExistsError
from dsc.deploy.onnx_export import export_onnx
from dsc.outputs.files import refuse_writing_onto_inputs, replacing
from dsc.training.checkpoint_record import load_model
from dsc.training.module import non_finite_weights

log = logging.getLogger(__name__)


def export(cfg: DictConfig) -> Path:
    """Export ``cfg.ckpt_path``'s network to ``cfg.output``; refuses to replace a file unless
    ``cfg.overwrite``."""
    output = Path(cfg.output)
    if output.is_dir():
        raise InvalidInputError(
            f"output={output} is a folder: name the file to write, e.g. output={output / 'model.onnx'}"
        )
    refuse_writing_onto_inputs([output], [Path(cfg.ckpt_path)], "output")
    if output.exists() and not cfg.overwrite:
        raise OutputExistsError(
            f"{output} exists already: pass overwrite=true to replace it, or another output="
        )
    model, record = load_model(cfg.ckpt_path, trusted_targets=cfg.trusted_targets)
    diverged = non_finite_weights(model.state_dict())
    if diverged:
        raise InvalidInputError(
            f"{cfg.ckpt_path} holds non-finite weights ({', '.join(diverged[:3])}): a network that "
            "computes NaN is not exported. Export a checkpoint from before training diverged"
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    with replacing(output) as partial:  # a failed write leaves an existing file as it was
        names = export_onnx(model, partial, record, tuple(cfg.image_size), cfg.opset)
    log.info("wrote %s (%.1f MB): images → %s", output, output.stat().st_size / 1e6, ", ".join(names))
    return output


@entry_point("export")
def main(cfg: DictConfig) -> None:
    """``python -m dsc.export``."""
    output = export(cfg)
    log.info(
        where_things_went(
            [("ONNX file", output)],
            [f"python -m dsc.predict onnx={output} input=<image or folder> output=<folder>"],
        )
    )


if __name__ == "__main__":
    main()
