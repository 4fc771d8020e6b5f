"""The semantic baseline and the paper's Table 1 command, on tiny built-in data."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra_configs import TINY, compose_config
from PIL import Image

from dsc.table1 import clear_winners, format_extended, format_table1, method_rows
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
    assert table.startswith("Instances on the test split:")  # reported where nothing was tuned
    assert list(rows) == ["spectral-only", "cross-entropy + CC", "semantic oracle + CC"]
    assert rows["spectral-only"]["pq"] is None  # no class head: class-agnostic scores only
    for values in rows.values():
        assert set(values) == {"pairwise_f1", "pairwise_fg_f1", "mask_ap", "mask_ap50", "pq", "agnostic_pq"}
        assert 0.0 <= values["agnostic_pq"]["mean"] <= 1.0 and 0.0 <= values["pairwise_fg_f1"]["mean"] <= 1.0
        assert values["agnostic_pq"]["n"] == 1 and values["agnostic_pq"]["std"] is None
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    # The semantic model is scored through connected components, whatever its own rounding.
    assert rows["cross-entropy + CC"]["pq"]["values"] == [metrics["semantic/val/pq"]]
    assert rows["semantic oracle + CC"]["pq"]["mean"] == metrics["spectral/val/semantic_oracle_cc/pq"]


def test_seeds_are_summarised_as_mean_and_sample_std_and_paired_winners_starred():
    def runs(*values):
        return [
            {"val/pairwise_fg_f1": v, "val/agnostic/pq": v / 2, "val/semantic_oracle_cc/pq": 0.5}
            for v in values
        ]

    rows = method_rows({"spectral": runs(0.90, 0.92, 0.94), "contrastive": runs(0.80, 0.81, 0.79)})
    assert list(rows) == ["spectral-only", "contrastive + KwikCluster", "semantic oracle + CC"]
    f1 = rows["spectral-only"]["pairwise_fg_f1"]
    assert f1["mean"] == pytest.approx(0.92) and f1["std"] == pytest.approx(0.02) and f1["n"] == 3
    assert f1["values"] == [0.90, 0.92, 0.94] and rows["spectral-only"]["mask_ap"] is None
    assert rows["semantic oracle + CC"]["pq"] == {"mean": 0.5, "std": 0.0, "n": 3, "values": [0.5] * 3}
    # Paired differences 0.10, 0.11, 0.15: the 95 % t interval [0.055, 0.185] excludes 0, starred.
    assert clear_winners(rows) == {"pairwise_fg_f1": "spectral-only", "agnostic_pq": "spectral-only"}
    table = format_extended(rows)
    assert "mean ± std over 3 seeds" in table and "0.920 ± 0.020*" in table and "0.800 ± 0.010 " in table
    assert "paired t, 95 % interval over seeds" in table
    # Differences −0.01, +0.02, −0.01: no star, though the means differ by more than 0.
    close = method_rows({"spectral": runs(0.90, 0.92, 0.94), "contrastive": runs(0.91, 0.90, 0.95)})
    assert clear_winners(close) == {}
    # Seeds move both alike (unpaired spreads overlap), the difference is steady: starred.
    paired = method_rows({"spectral": runs(0.60, 0.70, 0.80), "contrastive": runs(0.59, 0.69, 0.785)})
    assert clear_winners(paired)["pairwise_fg_f1"] == "spectral-only"


@pytest.mark.slow
def test_table1_without_checkpoints_trains_every_method_with_each_seed_and_reuses_them(tmp_path):
    short = [
        "trainer.max_epochs=1",
        "data.train.num_images=8",
        "data.val.num_images=4",
        "trainer.accelerator=cpu",
    ]
    short = "[" + ",".join(f'"{override}"' for override in short) + "]"
    methods = [
        "~experiments.joint",
        "~experiments.spectral",
        "+experiments.discriminative=shapes_discriminative",
    ]
    args = [*methods, "seeds=2", f"train_overrides={short}"]
    rows = run_table1(*args, output=tmp_path)
    assert list(rows) == ["discriminative + mean-shift", "cross-entropy + CC", "semantic oracle + CC"]
    for row in rows.values():
        assert row["pairwise_fg_f1"]["n"] == 2 and row["pairwise_fg_f1"]["std"] is not None
    assert sorted(p.name for p in (tmp_path / "discriminative").iterdir()) == ["seed_0", "seed_1"]
    # The two seeds trained different networks.
    checkpoints = [
        tmp_path / "discriminative" / seed / "checkpoints" / "last.ckpt" for seed in ("seed_0", "seed_1")
    ]
    weights = [torch.load(path, weights_only=True)["state_dict"] for path in checkpoints]
    assert not all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])
    # Each run's selected checkpoint (selected_checkpoint=last, every method alike) is what counts.
    for checkpoint in checkpoints:
        assert os.path.samefile(checkpoint.with_name("selected.ckpt"), checkpoint)
    again = run_table1(*args, output=tmp_path)  # every model is reused, none trained again
    assert again == rows


@pytest.mark.slow
def test_a_tiny_arena_tunes_every_method_alike_and_scores_every_rounding_on_test(tmp_path):
    short = ["trainer.max_epochs=1", "data.train.num_images=8", "data.val.num_images=4", "data.batch_size=4"]
    short = "[" + ",".join(f'"{override}"' for override in short) + "]"
    arguments = [
        "methods=arena", "data=shapes_hard", "seeds=2", "tune.trials=2", f"train_overrides={short}",
        *(f"~experiments.{role}" for role in ("spectral_sampled", "contrastive", "joint", "semantic")),
        *(f"~roundings.{name}" for name in ("refine", "best_of_8", "meanshift_unit", "agglomerative")),
    ]  # fmt: skip
    rows = run_table1(*arguments, output=tmp_path)
    assert list(rows) == ["spectral-only", "discriminative + mean-shift", "semantic oracle + CC"]
    arena = json.loads((tmp_path / "arena.json").read_text())
    assert arena["split"] == "test" and arena["seeds"] == [0, 1] and arena["test"].startswith("paired t")
    spectral, discriminative = (
        arena["roundings"]["spectral-only"],
        arena["roundings"]["discriminative + mean-shift"],
    )
    assert list(spectral) == ["own", "kwikcluster", "meanshift_raw"]
    assert "trains unit vectors" in spectral["meanshift_raw"]
    assert spectral["kwikcluster"]["values"] == spectral["own"]["values"]  # its own rounding, again
    assert discriminative["meanshift_raw"]["values"] == discriminative["own"]["values"]
    assert discriminative["kwikcluster"]["n"] == 2
    with Image.open(tmp_path / "arena.png") as image:
        assert image.format == "PNG"
    table = (tmp_path / "table1.txt").read_text()
    assert "Class-agnostic PQ on the test split by rounding" in table and "Time: training" in table
    # Two trials of TPE per method on val, the best retrained over both seeds.
    assert "Tuning: 2 trials of Optuna's TPE per method on val" in table
    for role in ("spectral", "discriminative"):
        trials = arena["tuning"][role]
        assert [trial["number"] for trial in trials] == [0, 1] and all(
            trial["value"] is not None for trial in trials
        )
        assert {"model.optimizer.lr", "model.optimizer.weight_decay"} <= set(trials[0]["params"])
        assert sorted(p.name for p in (tmp_path / "tuning" / role).iterdir()) == ["trial_000", "trial_001"]
        selected = tmp_path / role / "tuned" / "seed_1" / "checkpoints" / "selected.ckpt"
        record = torch.load(selected, weights_only=True)["dsc_config"]
        assert record["data"]["train"]["image_size"] == 96  # data=shapes_hard, for every method
        assert record["data"]["train"]["num_images"] == 8 and record["trainer"]["max_epochs"] == 1
    assert "(6 runs' fits)" not in table and "(8 runs' fits)" in table


def test_data_without_a_test_split_are_scored_on_val_and_say_so(trained_checkpoint, tmp_path, caplog):
    from dsc.table1 import scored_split

    checkpoint = torch.load(trained_checkpoint, weights_only=True)
    assert checkpoint["dsc_config"]["data"]["test"]["seed"] == 2000000
    assert scored_split("test", {"spectral": [str(trained_checkpoint)]}) == "test"
    checkpoint["dsc_config"]["data"]["test"] = None  # as VOC's, COCO's and Cityscapes' configs
    torch.save(checkpoint, tmp_path / "voc_like.ckpt")
    assert scored_split("test", {"spectral": [str(tmp_path / "voc_like.ckpt")]}) == "val"
    assert "have no test split (data.test)" in caplog.text
    assert scored_split("train", {"spectral": [str(tmp_path / "voc_like.ckpt")]}) == "train"


def test_roles_of_each_dimension_are_labelled_and_drawn_per_loss():
    from dsc.table1 import _by_dimension, label_of, method_of

    assert method_of("spectral_d32") == ("spectral", 32) and method_of("spectral_sampled") == (
        "spectral_sampled",
        None,
    )
    assert label_of("spectral_d32") == "spectral-only, d=32" and label_of("semantic") == "cross-entropy + CC"
    summary = {"mean": 0.7, "std": 0.01, "n": 2, "values": [0.69, 0.71]}
    rows = {"spectral-only, d=8": {"agnostic_pq": summary}, "cross-entropy + CC": {"agnostic_pq": None}}
    assert _by_dimension(rows, ["spectral_d8", "semantic"]) == {"spectral-only": {8: summary}}
