"""Images per second of the network on the CPU in torch and in onnxruntime (the file of
``python -m dsc.export``), side by side in one run, and the largest difference of their outputs.

    python benchmarks/onnx_inference.py [--backbones small_fcn fcn8] [--repeats 5]

small_fcn: the default run's network (``experiment=shapes_exact``); fcn8: FCN-8s with d = 21
(random weights: speed and agreement do not depend on them; the file is ~540 MB). The network
only: dsc's rounding after it is the same code for both.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from common import print_table, time_ms
from hydra import compose, initialize_config_dir

import dsc
from dsc.cli.schema import register_schemas
from dsc.deploy import export_onnx
from dsc.training import DeepSpectralClustering
from dsc.training.checkpoint_record import build_model

CONFIG_DIR = Path(dsc.__file__).parent / "conf"
CASES = {  # backbone → overrides, (batch, size) to time
    "small_fcn": (["experiment=shapes_exact"], [(16, 64), (4, 256)]),
    "fcn8": (["backbone=fcn8", "backbone.weights=null", "model.embed_dim=21"], [(1, 224), (1, 320)]),
}


def build(overrides: list[str]) -> DeepSpectralClustering:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        config = compose("train", overrides=[*overrides, f"paths.output_dir={tempfile.gettempdir()}"])
    return build_model(config).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per variant (median)")
    args = parser.parse_args()
    register_schemas()
    cpu = torch.device("cpu")
    rows = []
    for backbone in args.backbones:
        overrides, shapes = CASES[backbone]
        model = build(overrides)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.onnx"
            export_onnx(model, path)
            megabytes = path.stat().st_size / 1e6
            session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            for batch, size in shapes:
                images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
                with torch.inference_mode():
                    reference = model(images).embeddings.numpy()
                result = session.run(["embeddings"], {"images": images.numpy()})[0]
                difference = float(np.abs(result - reference).max())

                def in_torch(images=images, model=model) -> None:
                    with torch.inference_mode():
                        model(images).embeddings  # noqa: B018 (the normalisation is part of the network)

                def in_onnxruntime(images=images, session=session) -> None:
                    session.run(None, {"images": images.numpy()})

                torch_ms = time_ms(in_torch, cpu, args.repeats)
                onnx_ms = time_ms(in_onnxruntime, cpu, args.repeats)
                rows.append([
                    backbone, f"{batch}x{size}²", f"{megabytes:.1f}", f"{batch / torch_ms * 1e3:.1f}",
                    f"{batch / onnx_ms * 1e3:.1f}", f"{torch_ms / onnx_ms:.2f}", f"{difference:.1e}",
                ])  # fmt: skip
    print(
        f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"onnxruntime {onnxruntime.__version__}"
    )
    print_table(
        ["backbone", "batch", "file MB", "torch img/s", "onnxruntime img/s", "speed-up", "max |Δ|"], rows
    )


if __name__ == "__main__":
    sys.exit(main())
