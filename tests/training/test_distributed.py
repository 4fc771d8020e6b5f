"""Lightning's DDP with 2 CPU processes (gloo) against 1 process on the same data."""

import csv
import json
from pathlib import Path

import pytest
from hydra_configs import SHALLOW_SMP, compose_config, offline_environment, run_dsc_train

from dsc.train import train

# 16 training images, 7 validation images (odd: Lightning's default sampler would pad a duplicate).
# GroupNorm, because torch syncs BatchNorm across processes only on GPUs.
SETUP = [
    "data.train.num_images=16",
    "data.val.num_images=7",
    "data.val_batch_size=2",
    "trainer.max_epochs=1",
    "trainer.log_every_n_steps=1",
    "trainer.accelerator=cpu",
    "trainer.num_sanity_val_steps=0",
    "backbone.norm=group",
    "callbacks=none",
    "loss=spectral_joint",  # both heads: class-aware and class-agnostic mask AP and PQ
    "model.num_classes=4",
]


def run_in(output_dir: Path, *overrides: str, home: Path) -> None:
    """``python -m dsc.train`` in a subprocess, as a user runs it, offline and without a W&B login."""
    result = run_dsc_train(*overrides, f"hydra.run.dir={output_dir}", env=offline_environment(home))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]


def step_losses(output_dir: Path) -> list[float]:
    """train/loss per step from the CSV logger's file(s) under output_dir."""
    files = sorted((output_dir / "csv").rglob("metrics.csv"))
    assert len(files) == 1, files  # one logger run, written by rank zero alone
    with files[0].open() as handle:
        return [float(row["train/loss"]) for row in csv.DictReader(handle) if row.get("train/loss")]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path, make_config):
    single_dir, ddp_dir = tmp_path / "single", tmp_path / "ddp"
    single_dir.mkdir()
    train(compose_config("train", single_dir, *SETUP, "data.batch_size=4"))
    # Two processes with half the batch each see, step by step, the same images as one.
    run_in(
        ddp_dir,
        *SETUP,
        "data.batch_size=2",
        "trainer.devices=2",
        "trainer.strategy=ddp",
        "logger=many",
        home=tmp_path,
    )

    single = json.loads((single_dir / "metrics.json").read_text())
    ddp = json.loads((ddp_dir / "metrics.json").read_text())
    # The ground truth's own partition depends on the data alone: every validation image counted
    # once on one rank, none twice (a padded duplicate would change these).
    for name, value in single.items():
        if name.startswith("val/semantic_oracle/"):
            assert ddp[name] == pytest.approx(value, abs=1e-12), name
        # Mask AP and PQ of the ground truth through connected components: torchmetrics' states
        # (COCOeval's lists, PQ's sums) gathered from both ranks give one process's numbers.
        if name.startswith("val/semantic_oracle_cc/"):
            assert ddp[name] == pytest.approx(value, abs=1e-12), name
    assert {"val/semantic_oracle_cc/mask_ap", "val/semantic_oracle_cc/pq"} <= set(ddp)
    for name in ("val/pairwise_f1", "val/pairwise_fg_f1", "val/pairwise_accuracy"):
        assert ddp[name] == pytest.approx(single[name], abs=2e-3), name
    for name in ("val/mask_ap", "val/mask_ap50", "val/pq", "val/agnostic/mask_ap", "val/agnostic/pq"):
        assert ddp[name] == pytest.approx(single[name], abs=1e-2), name
    assert ddp["val/loss"] == pytest.approx(single["val/loss"], rel=1e-4)
    assert step_losses(ddp_dir) == pytest.approx(step_losses(single_dir), rel=1e-4)
    assert len(step_losses(ddp_dir)) == 4

    # One output directory for both ranks: rank 1 logs beside rank 0, writes no .hydra of its own,
    # and rank zero alone writes metrics, logger runs and the W&B run.
    assert sorted(path.name for path in tmp_path.iterdir() if not path.name.startswith(".")) == [
        "ddp",
        "single",
    ]
    assert (ddp_dir / "train_ddp_process_1.log").is_file()
    assert len(list(ddp_dir.rglob("config.yaml"))) == 1
    assert len(list(ddp_dir.glob("wandb/offline-run-*"))) == 1
    event_files = list(ddp_dir.glob("tensorboard/**/events.out.tfevents.*"))
    assert event_files and len({name.name.split(".")[-2] for name in event_files}) == 1  # one process id


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["shapes_discriminative", "shapes_contrastive"])
def test_the_compared_losses_train_with_two_processes_as_with_one(tmp_path, experiment):
    """The discriminative loss is exact: the same steps. The contrastive loss draws its pixels from
    the process rank's generator, so its steps differ by the draw, and its scores only by noise."""
    setup = [
        f"experiment={experiment}",
        *SETUP[:-2],  # without the joint loss
        "data.train.num_images=16",
        *(["loss.sample_size=64"] if experiment == "shapes_contrastive" else []),
        "logger=csv",
    ]
    single_dir, ddp_dir = tmp_path / "single", tmp_path / "ddp"
    run_in(single_dir, *setup, "data.batch_size=4", home=tmp_path)
    run_in(ddp_dir, *setup, "data.batch_size=2", "trainer.devices=2", "trainer.strategy=ddp", home=tmp_path)
    single = json.loads((single_dir / "metrics.json").read_text())
    ddp = json.loads((ddp_dir / "metrics.json").read_text())
    if experiment == "shapes_discriminative":
        assert step_losses(ddp_dir) == pytest.approx(step_losses(single_dir), rel=1e-4)
        assert ddp["val/loss"] == pytest.approx(single["val/loss"], rel=1e-4)
        assert ddp["val/pairwise_fg_f1"] == pytest.approx(single["val/pairwise_fg_f1"], abs=2e-3)
    else:
        assert len(step_losses(ddp_dir)) == len(step_losses(single_dir)) == 4
        assert step_losses(ddp_dir) == pytest.approx(step_losses(single_dir), rel=0.1)
        assert ddp["val/pairwise_fg_f1"] == pytest.approx(single["val/pairwise_fg_f1"], abs=0.05)


@pytest.mark.slow
def test_an_smp_network_trains_with_two_processes_as_with_one(tmp_path):
    """smp's encoders normalise with BatchNorm, which torch syncs only on GPUs: each CPU process
    normalises its own half batch, so the steps differ a little, the scores only by that."""
    setup = [*SETUP[:-2], "backbone=smp", "backbone.arch=FPN", "backbone.encoder_name=tu-resnet18",
             *SHALLOW_SMP["FPN"], "logger=csv"]  # fmt: skip
    setup.remove("backbone.norm=group")
    single_dir, ddp_dir = tmp_path / "single", tmp_path / "ddp"
    single_dir.mkdir()
    train(compose_config("train", single_dir, *setup, "data.batch_size=4"))  # in this process
    run_in(ddp_dir, *setup, "data.batch_size=2", "trainer.devices=2", "trainer.strategy=ddp", home=tmp_path)
    single = json.loads((single_dir / "metrics.json").read_text())
    ddp = json.loads((ddp_dir / "metrics.json").read_text())
    assert len(step_losses(ddp_dir)) == len(step_losses(single_dir)) == 4
    assert step_losses(ddp_dir)[0] == pytest.approx(step_losses(single_dir)[0], rel=0.05)
    assert ddp["val/pairwise_fg_f1"] == pytest.approx(single["val/pairwise_fg_f1"], abs=0.05)
