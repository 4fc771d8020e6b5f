"""One rule chooses the checkpoint a run's results come from, and selected.ckpt is that file."""

import os

import pytest
import torch
from hydra_configs import TINY, compose_config

from dsc.contracts import InvalidInputError
from dsc.train import train
from dsc.training.scoring import score_checkpoint
from dsc.training.selection import SELECTED_CHECKPOINT, mark_selected, selected_path


def test_the_rule_chooses_best_or_last(tmp_path):
    last = tmp_path / "last.ckpt"
    assert selected_path("best", str(tmp_path / "epoch_003.ckpt"), last) == tmp_path / "epoch_003.ckpt"
    assert selected_path("best", "", last) is None  # no best epoch (fast_dev_run): the last weights
    assert selected_path("last", "", last) is None
    last.write_bytes(b"x")
    assert selected_path("last", str(tmp_path / "epoch_003.ckpt"), last) == last
    with pytest.raises(InvalidInputError, match=r"selected_checkpoint=newest: choose best .* or last"):
        selected_path("newest", "", last)


def test_selected_keeps_the_scored_state_when_last_is_replaced(tmp_path):
    last = tmp_path / "last.ckpt"
    last.write_bytes(b"epoch 6")
    selected = mark_selected(last, tmp_path)
    assert selected == tmp_path / SELECTED_CHECKPOINT and selected.read_bytes() == b"epoch 6"
    partial = tmp_path / "partial"
    partial.write_bytes(b"epoch 7")
    os.replace(partial, last)  # how LastCheckpoint writes
    assert selected.read_bytes() == b"epoch 6"
    assert mark_selected(last, tmp_path).read_bytes() == b"epoch 7"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["last.ckpt", SELECTED_CHECKPOINT]


@pytest.mark.parametrize("rule", ["best", "last"])
def test_the_run_summary_and_a_later_scoring_score_the_selected_checkpoint(tmp_path, rule):
    _, summary = train(
        compose_config("train", tmp_path, *TINY, "trainer.max_epochs=2", f"selected_checkpoint={rule}")
    )
    checkpoints = tmp_path / "checkpoints"
    chosen = checkpoints / "last.ckpt" if rule == "last" else next(checkpoints.glob("epoch_*.ckpt"))
    assert os.path.samefile(checkpoints / SELECTED_CHECKPOINT, chosen)
    trainer = compose_config("train", tmp_path, *TINY).trainer
    scored = score_checkpoint(str(checkpoints / SELECTED_CHECKPOINT), trainer)
    for key in ("val/pairwise_fg_f1", "val/agnostic/pq", "val/loss"):
        assert scored[key] == pytest.approx(summary[key], abs=1e-6), key
    on_test = score_checkpoint(str(checkpoints / SELECTED_CHECKPOINT), trainer, split="test")
    assert on_test["val/pairwise_fg_f1"] != scored["val/pairwise_fg_f1"]  # other images
    epoch = torch.load(checkpoints / SELECTED_CHECKPOINT, weights_only=True)["epoch"]
    assert epoch == (1 if rule == "last" else torch.load(chosen, weights_only=True)["epoch"])


def test_a_best_epoch_written_elsewhere_is_selected_into_the_run_folder(tmp_path):
    elsewhere = tmp_path / "csv" / "checkpoints" / "epoch=0-step=4.ckpt"
    elsewhere.parent.mkdir(parents=True)
    elsewhere.write_bytes(b"epoch 0")
    selected = mark_selected(elsewhere, tmp_path / "checkpoints")
    assert selected == tmp_path / "checkpoints" / SELECTED_CHECKPOINT and selected.read_bytes() == b"epoch 0"
