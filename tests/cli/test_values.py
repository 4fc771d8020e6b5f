"""Values that cannot work are refused as soon as the config is composed, naming the key."""

import subprocess
import sys

import pytest
from hydra_configs import compose_config

from dsc.cli.values import check_values
from dsc.contracts import InvalidInputError

REQUIRED = {"predict": ["input=x"], "evaluate": ["ckpt_path=x"], "export": ["ckpt_path=x"]}  # their ??? keys


@pytest.mark.parametrize(
    "entry, override, message",
    [
        ("train", "data.batch_size=0", r"data\.batch_size=0: the number of images per training batch"),
        ("train", "data.train.num_images=0", r"data\.train\.num_images=0: .* at least 1"),
        ("train", "loss.sample_size=1", r"loss\.sample_size=1: .* at least 2"),
        ("train", "model.optimizer.lr=-0.1", r"model\.optimizer\.lr=-0\.1: the weights would not move"),
        ("train", "model.embed_dim=0", r"model\.embed_dim=0 and model\.num_classes=0"),
        ("predict", "batch_size=0", r"batch_size=0: the number of images per forward pass"),
        ("predict", "max_pixels=0", r"max_pixels=0"),
        ("predict", "min_score=2", r"min_score=2(\.0)?: a score threshold lies in \[0, 1\]"),
        ("evaluate", "min_size=-3", r"min_size=-3"),
        ("export", "image_size=[0,64]", r"image_size=\[0, 64\]: give \[height, width\]"),
        ("table1", "seeds=0", r"seeds=0: the number of trainings per method"),
    ],
)
def test_values_that_cannot_work_are_named(tmp_path, entry, override, message):
    cfg = compose_config(entry, tmp_path, *REQUIRED.get(entry, []), override)
    with pytest.raises(InvalidInputError, match=message):
        check_values(cfg)


@pytest.mark.parametrize("entry", ["train", "predict", "evaluate", "export", "table1", "demo"])
def test_the_shipped_defaults_pass(tmp_path, entry):
    check_values(compose_config(entry, tmp_path, *REQUIRED.get(entry, [])))


def test_the_command_line_gets_one_line_and_exit_code_2(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "dsc.train", "data.batch_size=-1", f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    errors = [line for line in (done.stdout + done.stderr).splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "data.batch_size=-1" in errors[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()
