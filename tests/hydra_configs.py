"""Composing dsc's real Hydra configs in tests, as the entry points would, and running
``python -m dsc.train`` as a user does."""

import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

import dsc
from dsc.cli.schema import register_schemas

CONFIG_DIR = Path(dsc.__file__).parent / "conf"
register_schemas()
# Small and quick: a handful of images, one short epoch.
TINY = [
    "data.train.num_images=16",
    "data.val.num_images=6",
    "data.batch_size=4",
    "data.val_batch_size=3",
    "trainer.max_epochs=1",
    "trainer.log_every_n_steps=1",
    "trainer.accelerator=cpu",
]

# backbone=smp with three encoder stages and narrow decoders: the same code paths, a few times faster.
SHALLOW_SMP = {
    "Unet": ["+backbone.options.encoder_depth=3", "+backbone.options.decoder_channels=[64,32,16]"],
    "FPN": ["+backbone.options.encoder_depth=3", "+backbone.options.decoder_pyramid_channels=64",
            "+backbone.options.decoder_segmentation_channels=32"],
}  # fmt: skip


def compose_config(name: str, output_dir: Path, *overrides: str) -> DictConfig:
    """Compose one of dsc's real configs with overrides, its outputs in output_dir, as Hydra would."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(name, overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.hydra.runtime.output_dir = str(output_dir)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra
    GlobalHydra.instance().clear()
    return cfg


def run_dsc_train(
    *args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    """``python -m dsc.train *args`` in a subprocess, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "dsc.train", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def offline_environment(home: Path, *python_path: Path) -> dict[str, str]:
    """This process's environment with HOME at ``home``, W&B offline and without a login, and
    ``python_path`` put first on PYTHONPATH."""
    env = {**os.environ, "HOME": str(home), "WANDB_MODE": "offline", "PYTHONWARNINGS": "ignore"}
    env.pop("WANDB_API_KEY", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [*map(str, python_path), env.get("PYTHONPATH")]))
    return env
