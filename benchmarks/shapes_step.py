"""Milliseconds per training step of the built-in shapes recipes (forward, loss, backward, Adam step,
as ``DeepSpectralClustering.training_step`` takes it) with the backbone in NCHW and in channels-last
memory format, side by side in one run, and their ratio.

    python benchmarks/shapes_step.py [--device cpu] [--batch 16] [--steps 10]

Recipes: the default run (``experiment=shapes_exact``: SmallFCN width 16, exact spectral loss) and
``experiment=shapes_joint`` (width 24, spectral + cross-entropy), which ``dsc.table1`` trains.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from common import print_table, time_ms
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

import dsc
from dsc.cli.schema import register_schemas
from dsc.training.checkpoint_record import build_model

CONFIG_DIR = Path(dsc.__file__).parent / "conf"


def step_function(experiment: str, channels_last: bool, batch_size: int, device: torch.device):
    overrides = [f"experiment={experiment}", f"model.channels_last={channels_last}"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        config = compose("train", overrides=[*overrides, f"paths.output_dir={tempfile.gettempdir()}"])
    model = build_model(config).to(device).train()
    dataset = instantiate(config.data.train)
    items = [dataset[index] for index in range(batch_size)]
    batch = {
        key: torch.stack([item[key] for item in items]).to(device)
        for key in ("image", "instances", "classes")
    }
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model.loss.training_loss(model(batch["image"]), batch).backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant (median)")
    args = parser.parse_args()
    register_schemas()
    device = torch.device(args.device)
    rows = []
    for experiment in ("shapes_exact", "shapes_joint"):
        times = {
            layout: time_ms(
                step_function(experiment, layout, args.batch, device), device, args.steps, warmup=3
            )
            for layout in (False, True)
        }
        rows.append(
            [experiment, f"{times[False]:.0f}", f"{times[True]:.0f}", f"{times[True] / times[False]:.2f}"]
        )
    threads = torch.get_num_threads()
    print(f"device {device}, batch {args.batch} x 64², {threads} threads, torch {torch.__version__}")
    print_table(["recipe", "NCHW ms", "channels-last ms", "ratio"], rows)


if __name__ == "__main__":
    sys.exit(main())
