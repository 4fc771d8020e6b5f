"""``python -m dsc.<entry> --help`` lists the entry point's own choices and keys, one line each."""

import pytest
from omegaconf import OmegaConf

from dsc.cli.entry_point import CONFIG_DIR
from dsc.cli.help import entry_help, read_entry_config

ENTRIES = ("train", "evaluate", "predict", "export", "demo", "table1")


@pytest.mark.parametrize("entry", ENTRIES)
def test_every_key_of_the_entry_config_is_listed_with_what_it_does(entry):
    _, groups, keys = read_entry_config(CONFIG_DIR / f"{entry}.yaml")
    own = OmegaConf.load(CONFIG_DIR / f"{entry}.yaml")
    expected = [
        f"{name}.{inner}" if isinstance(value, dict) else name
        for name, value in OmegaConf.to_container(own).items()
        if name not in ("defaults", "hydra")
        for inner in (value if isinstance(value, dict) else [None])
    ]
    assert [key.name for key in keys] == expected
    assert {group.name for group in groups} <= {path.name for path in CONFIG_DIR.iterdir() if path.is_dir()}
    assert all(key.meaning for key in keys), [key.name for key in keys if not key.meaning]
    text = entry_help(CONFIG_DIR, entry)
    key_lines = [line for line in text.splitlines() if line.lstrip().split("=")[0] in expected]
    assert len(key_lines) == len(expected) and all(len(line) <= 110 for line in key_lines)


def test_predict_help_lists_its_own_keys_and_no_training_group():
    text = entry_help(CONFIG_DIR, "predict")
    assert "min_score=0.5" in text and "input=???" in text
    assert "rounding" in text and "backbone" not in text and "loss" not in text
