"""The semantic baseline and the paper's Table 1 command, on tiny built-in data."""

import subprocess
import sys

import pytest
from hydra_configs import TINY, compose_config

from dsc.table1 import format_table1
from dsc.train import train

SEMANTIC = ["loss=cross_entropy", "rounding=class_argmax", "model.embed_dim=4"]


@pytest.fixture(scope="module")
def semantic_checkpoint(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("semantic")
    _, metrics = train(compose_config("train", output_dir, *TINY, *SEMANTIC))
    assert {"val/class_partition/pairwise_accuracy", "val/pairwise_fg_f1"} <= set(metrics)
    assert "val/theorem22/ratio" not in metrics  # no embedding to round for a semantic model
    return output_dir / "checkpoints" / "last.ckpt"


def test_table1_layout_places_paper_and_measured_numbers():
    semantic = {
        f"val/{g}pairwise_{s}": 0.5
        for g in ("class_partition/", "", "semantic_oracle/")
        for s in ("accuracy", "precision", "recall", "fg_accuracy", "fg_precision", "fg_recall")
    }
    spectral = {k: 0.25 for k in semantic}
    lines = format_table1(semantic, spectral).splitlines()
    assert lines[3].split()[-6:] == ["0.859", "0.864", "0.915", "-", "-", "-"]
    assert lines[4].split()[-6:] == ["0.500", "0.500", "0.500", "-", "-", "-"]
    assert lines[5].split()[-6:] == ["-", "-", "-", "0.852", "0.848", "0.919"]
    assert lines[6].split()[-6:] == ["-", "-", "-", "0.250", "0.250", "0.250"]
    assert lines[-1].split()[-3:] == ["0.250"] * 3


def test_table1_command_scores_both_checkpoints(semantic_checkpoint, trained_checkpoint, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dsc.table1",
            f"spectral={trained_checkpoint}",
            f"semantic={semantic_checkpoint}",
            "trainer.accelerator=cpu",
            f"hydra.run.dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = (tmp_path / "table1.txt").read_text()
    assert "FCN-8 (paper)" in table and "Deep Spectral (dsc)" in table and table in result.stdout
    assert (tmp_path / "metrics.json").exists()
