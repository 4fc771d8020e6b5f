"""The semantic baseline and the paper's Table 1 command, on tiny built-in data."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra_configs import TINY, compose_config

from dsc.table1 import format_table1
from dsc.train import train

SEMANTIC = ["loss=cross_entropy", "rounding=class_argmax", "model.embed_dim=0", "model.num_classes=4"]


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


def run_table1(*args: str, output: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "dsc.table1", *args, "trainer.accelerator=cpu", f"hydra.run.dir={output}"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = (output / "table1.txt").read_text()
    assert table in result.stdout
    return json.loads((output / "table1.json").read_text())


def test_table1_command_scores_both_checkpoints(semantic_checkpoint, trained_checkpoint, tmp_path):
    rows = run_table1(f"spectral={trained_checkpoint}", f"semantic={semantic_checkpoint}", output=tmp_path)
    table = (tmp_path / "table1.txt").read_text()
    assert "FCN-8 (paper)" in table and "Deep Spectral (dsc)" in table  # the paper's layout follows
    assert list(rows) == ["spectral-only", "cross-entropy + CC", "semantic oracle + CC"]
    assert rows["spectral-only"]["pq"] is None  # no class head: class-agnostic scores only
    for values in rows.values():
        assert set(values) == {"pairwise_f1", "pairwise_fg_f1", "mask_ap", "mask_ap50", "pq", "agnostic_pq"}
        assert 0.0 <= values["agnostic_pq"] <= 1.0 and 0.0 <= values["pairwise_fg_f1"] <= 1.0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    # The semantic model is scored through connected components, whatever its own rounding.
    assert metrics["semantic/val/pq"] == rows["cross-entropy + CC"]["pq"]
    assert rows["semantic oracle + CC"]["pq"] == metrics["spectral/val/semantic_oracle_cc/pq"]


@pytest.mark.slow
def test_table1_without_checkpoints_trains_the_three_models(tmp_path):
    short = [
        "trainer.max_epochs=1",
        "data.train.num_images=32",
        "data.val.num_images=8",
        "trainer.accelerator=cpu",
    ]
    short = "[" + ",".join(f'"{override}"' for override in short) + "]"
    rows = run_table1(f"train_overrides={short}", output=tmp_path)
    assert list(rows) == ["spectral-only", "joint", "cross-entropy + CC", "semantic oracle + CC"]
    assert all(value is not None for value in rows["joint"].values())
    for role in ("spectral", "joint", "semantic"):
        assert (tmp_path / role / "checkpoints" / "last.ckpt").is_file()
