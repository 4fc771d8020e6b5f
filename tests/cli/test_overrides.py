"""Overrides of keys a config lacks are named, with the closest keys, before Hydra runs."""

import subprocess
import sys

import pytest

from dsc.cli.entry_point import CONFIG_DIR
from dsc.cli.overrides import CompositionError, check_choices, unknown_keys


@pytest.mark.parametrize(
    "config,arguments,expected",
    [
        ("train", ["trainer.max_epoch=3"], [("trainer.max_epoch", ["trainer.max_epochs"])]),
        (
            "train",
            ["data=shapes_hard", "data.train.style.textur=0.2"],
            [("data.train.style.textur", ["data.train.style.texture"])],
        ),
        ("train", ["-m", "model.embeddim=8,16"], [("model.embeddim", ["model.embed_dim"])]),
        ("predict", ["input=x", "min_scor=0.3"], [("min_scor", ["min_score"])]),
    ],
)
def test_unknown_keys_come_with_the_closest_known_ones(config, arguments, expected):
    found = unknown_keys(CONFIG_DIR, config, arguments)
    assert [(key, close[:1]) for key, close in found] == expected


@pytest.mark.parametrize(
    "arguments",
    [
        ["trainer.max_epochs=3", "data=shapes_hard", "data.train.style.texture=0.2"],
        ["-m", "model.embed_dim=8,16", "loss.sample_size=256,1024"],
        ["+trainer.new_key=1"],  # adding a key is Hydra's to allow
        ["trainer.max_epochs=three"],  # a wrong value is Hydra's to report
        ["trainer.max_epoch=3", "--cfg", "job"],  # Hydra's flags answer something else
        ["hydra.run.dir=/tmp/x", "hydra/launcher=basic"],
    ],
)
def test_known_keys_and_other_mistakes_pass(arguments):
    assert unknown_keys(CONFIG_DIR, "train", arguments) == []


def test_a_typo_exits_2_with_one_line_naming_the_closest_key(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "dsc.train", "trainer.max_epoch=3", f"hydra.run.dir={tmp_path}/run"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: trainer.max_epoch: python -m dsc.train's config has no such key; did you mean "
        "trainer.max_epochs or trainer.min_epochs or trainer.max_steps? (`python -m dsc.train --cfg job` "
        "prints every key; +trainer.max_epoch=… adds a key the config lacks)"
    ]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "argument, line",
    [
        ("model.embed_dim=three", "error: Value 'three' of type 'str' could not be converted to Integer"),
        ("backbone=resnet9000", "error: backbone=resnet9000: no such choice; the options are custom, "),
        ("model.embed_dim=[", "error: no viable alternative at input '['"),
        ("trainer=cpu,ddp", "error: trainer=cpu,ddp: several values sweep, which needs -m"),
    ],
    ids=["a wrong type", "an unknown choice", "an override that does not parse", "a sweep without -m"],
)
def test_what_hydra_would_refuse_exits_2_with_one_line(tmp_path, argument, line):
    result = subprocess.run(
        [sys.executable, "-m", "dsc.train", argument, f"hydra.run.dir={tmp_path}/run"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    (only,) = result.stderr.strip().splitlines()
    assert only.startswith(line)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "arguments",
    [
        ["-m", "trainer=cpu,ddp"],
        ["--multirun", "model.embed_dim=8,16"],
        ["hparams_search=optuna", "model.embed_dim=8,16"],
        ["hydra.mode=MULTIRUN", "seed=range(3)"],
    ],
)
def test_a_sweep_passes_where_it_sweeps(arguments):
    check_choices(CONFIG_DIR, arguments)


def test_a_sweep_without_multirun_is_refused():
    with pytest.raises(CompositionError, match=r"seed=0,1: several values sweep, which needs -m"):
        check_choices(CONFIG_DIR, ["seed=0,1"])
