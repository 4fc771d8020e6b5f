import os

import torch

# Without a GPU, Triton's interpreter runs the fused kernels on the CPU (dsc/losses/fused.py); it
# must be chosen before the kernels are defined, so before dsc is imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from pathlib import Path

import pytest
from hydra_configs import TINY, compose_config
from omegaconf import DictConfig


@pytest.fixture
def make_config(tmp_path, monkeypatch):
    """Compose the train config (tiny unless tiny=False) with its outputs under tmp_path."""
    monkeypatch.setenv("HOME", str(tmp_path))  # no W&B login from the developer's netrc
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)

    def make(*overrides: str, tiny: bool = True) -> DictConfig:
        return compose_config("train", tmp_path, *(TINY if tiny else []), *overrides)

    return make


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory) -> Path:
    """last.ckpt of a tiny training run, shared by the inference tests."""
    from dsc.train import train

    output_dir = tmp_path_factory.mktemp("trained")
    train(
        compose_config(
            "train", output_dir, *TINY, "trainer.max_epochs=2", "callbacks.validation_images.num_images=2"
        )
    )
    return output_dir / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def joint_checkpoint(tmp_path_factory) -> Path:
    """A tiny run's checkpoint with an embedding and a class head of 9 classes (Cityscapes' count;
    the shapes use 1..3), its background score lowered by 20 so that every segment is an object
    of some class (a briefly trained class head calls everything background), for the tests of
    result files."""
    import torch

    from dsc.train import train

    output_dir = tmp_path_factory.mktemp("joint")
    train(compose_config("train", output_dir, *TINY, "loss=spectral_joint", "model.num_classes=9"))
    checkpoint = torch.load(output_dir / "checkpoints" / "last.ckpt", weights_only=True)
    embed_dim = checkpoint["dsc_config"]["model"]["embed_dim"]
    checkpoint["state_dict"]["backbone.head.bias"][embed_dim] -= 20.0  # channel d: class 0's score
    torch.save(checkpoint, output_dir / "objects_everywhere.ckpt")
    return output_dir / "objects_everywhere.ckpt"
