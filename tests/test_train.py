"""The real entry point, driven with composed configs on tiny data (a few seconds each)."""

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra_configs import run_dsc_train
from PIL import Image
from sample_data import VOC_SAMPLE, needs_voc

import dsc
from dsc.cli.help import entry_help
from dsc.outputs.pictures import TITLE_HEIGHT
from dsc.train import train

CONFIG_DIR = Path(dsc.__file__).parent / "conf"
# backbone=custom needs a network of yours: torchvision's, with random weights.
CUSTOM_NETWORK = [
    "backbone.network._target_=torchvision.models.segmentation.deeplabv3_mobilenet_v3_large",
    "+backbone.network.weights=null",
    "+backbone.network.weights_backbone=null",
]
METRIC_KEYS = [
    f"val/{group}pairwise_{fg}{score}"
    for group in ("", "semantic_oracle/")
    for fg in ("", "fg_")
    for score in ("accuracy", "precision", "recall", "f1")
]


def test_fast_dev_run_reports_every_metric(make_config, tmp_path):
    optimized, metrics = train(make_config("debug=fdr"))
    assert set(METRIC_KEYS) <= set(metrics)
    assert optimized == metrics["val/pairwise_fg_f1"]
    assert all(0.0 <= metrics[key] <= 1.0 for key in METRIC_KEYS)
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written == pytest.approx(metrics)
    assert 0 < written["time/validation_seconds"] < written["time/fit_seconds"]


def test_csv_logger_and_checkpoints(make_config, tmp_path):
    train(make_config())
    header = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/loss", "val/pairwise_fg_f1", "val/semantic_oracle/pairwise_fg_f1"} <= set(header)
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["dsc_config"]["model"]["embed_dim"] == 16


def test_tensorboard_run_is_named_and_keeps_final_scores_apart_from_the_curves(make_config, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, metrics = train(make_config("logger=tensorboard", "trainer.max_epochs=2"))
    run = tmp_path / "tensorboard" / "train" / tmp_path.name  # <task_name>/<folder name>
    curves = EventAccumulator(str(run), size_guidance={"tensors": 0}).Reload()
    assert "val/example_0" in curves.Tags()["images"]  # the validation pictures
    assert len(curves.Scalars("val/pairwise_fg_f1")) == 2  # one point per epoch, none for the final scoring
    assert not [tag for tag in curves.Tags()["scalars"] if tag.startswith("final")]
    assert "final scores/text_summary" in curves.Tags()["tensors"]
    final = EventAccumulator(str(run / "final_scores"), size_guidance={"tensors": 0}).Reload()
    (score,) = final.Scalars("val/pairwise_fg_f1")
    assert score.value == pytest.approx(metrics["val/pairwise_fg_f1"])
    plugin = final.PluginTagToContent("hparams")  # the HParams tab: the config beside the scores
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(plugin)
    assert b"model.embed_dim" in plugin["_hparams_/session_start_info"]


def test_final_scoring_is_not_logged_as_another_epoch(make_config, tmp_path, caplog):
    with caplog.at_level("INFO", logger="dsc.training.callbacks"):
        train(make_config("trainer.max_epochs=2", "callbacks.validation_images.num_images=1"))
    # One line per validated epoch (which dsc.table1 and dsc.demo follow), none for the final scoring.
    epoch_lines = [line.rsplit(" ", 1)[0] for line in caplog.messages if " validated: " in line]
    assert epoch_lines == [f"epoch {epoch}/2 validated: val/pairwise_fg_f1" for epoch in (1, 2)]
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ["epoch_000", "epoch_001", "final"]
    with (tmp_path / "csv" / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert sorted({row["epoch"] for row in rows if row.get("val/loss")}) == ["0", "1"]
    assert not [name for name in rows[0] if name.startswith("final")]  # the final scores: metrics.json


def test_validation_pictures_are_written(make_config, tmp_path):
    train(make_config("trainer.max_epochs=2", "callbacks.validation_images.num_images=2"))
    for epoch in (0, 1):
        pictures = sorted((tmp_path / "images" / f"epoch_{epoch:03d}").glob("val_*.png"))
        assert [p.name for p in pictures] == ["val_0.png", "val_1.png"]
    panel = np.asarray(Image.open(pictures[0]))
    # image, ground truth / prediction, embedding: 64-px images at 256 px, each under its title
    assert panel.shape == (2 * (TITLE_HEIGHT + 256) + 4, 2 * 256 + 4, 3)


def test_wandb_logger_runs_offline_without_login_and_closes_the_run(make_config, tmp_path):
    import wandb

    train(make_config("logger=wandb", "model.embed_dim=8"))
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    assert list(runs[0].glob("files/media/images/val/example_0*.png"))
    assert list(runs[0].glob("files/media/images/mask/val/example_0*.mask.png")), (
        "ground-truth and predicted masks"
    )
    assert wandb.run is None
    # The final scores (time/… only among them) went to the run's summary, not its history.
    (log,) = runs[0].glob("*.wandb")
    records = log.read_bytes()
    assert b"time/fit_seconds" in records and b"final/" not in records
    assert f"train/{tmp_path.name}".encode() in records  # the run's name


def test_wandb_logger_goes_offline_when_the_server_never_answers(make_config, tmp_path, monkeypatch):
    from local_servers import silent_server

    cfg = make_config("logger=wandb", "logger.wandb.timeout_s=1")
    with silent_server() as url:
        monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
        monkeypatch.setenv("WANDB_BASE_URL", url)
        _, metrics = train(cfg)
    assert 0.0 <= metrics["val/pairwise_fg_f1"] <= 1.0
    assert list((tmp_path / "wandb").glob("offline-run-*"))


@pytest.mark.parametrize(
    "overrides", [["loss.sample_size=64"], ["experiment=shapes_sampled"], ["experiment=shapes_exact"]]
)
def test_sampled_loss_and_experiments_train(make_config, overrides):
    optimized, _ = train(make_config(*overrides, "debug=fdr"))
    assert 0.0 <= optimized <= 1.0


def test_training_without_a_class_scores_it_apart(make_config, tmp_path):
    _, metrics = train(make_config("data.exclude_classes=[2]", "data.train.num_images=24"))
    for group in ("unseen", "seen"):
        assert 0.0 <= metrics[f"val/{group}/pairwise_fg_f1"] <= 1.0
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert "val/unseen/pairwise_fg_f1" in written


def test_one_last_ckpt_always_the_newest_state(make_config, tmp_path):
    # 4 steps an epoch, 8 in all: last.ckpt at steps 3, 4 (after validation), 6, 8 and after training.
    train(make_config("trainer.max_epochs=2", "callbacks.last_checkpoint.every_n_train_steps=3"))
    names = sorted(path.name for path in (tmp_path / "checkpoints").iterdir())
    assert [name for name in names if name.startswith("last")] == ["last.ckpt"]
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 8 and last["epoch"] == 1


def test_diverging_run_writes_no_checkpoint_after_the_loss_turns_non_finite(make_config, tmp_path):
    # A checkpoint every step, the loss read every 10: the check before each save stops the run.
    cfg = make_config(
        "model.optimizer._target_=torch.optim.SGD",
        "model.optimizer.lr=1e30",
        "model.scheduler=null",
        "trainer.log_every_n_steps=10",
        "callbacks.last_checkpoint.every_n_train_steps=1",
    )
    with pytest.raises(FloatingPointError, match=r"global step 1 .*last\.ckpt holds the last finite"):
        train(cfg)
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 1
    assert all(torch.isfinite(weights).all() for weights in last["state_dict"].values())


def test_ddp_on_cpus_trains_without_sync_batchnorm(make_config):
    _, metrics = train(
        make_config("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=1", "debug=fdr")
    )
    assert 0.0 <= metrics["val/pairwise_fg_f1"] <= 1.0


def test_excluding_a_class_the_data_lack_is_refused(make_config):
    from hydra.errors import InstantiationException

    with pytest.raises(
        InstantiationException, match=r"\[99\] are not object classes of Shapes.*1 disk, 2 square, 3 triangle"
    ):
        train(make_config("data.exclude_classes=[99]"))


def test_validation_data_without_valid_pixels_fail_clearly():
    import pytorch_lightning as pl

    from dsc.data import VOID, InstanceDataModule, Shapes
    from dsc.training.checkpoint_record import build_model

    class AllVoid(Shapes):
        def __getitem__(self, index):
            item = dict(super().__getitem__(index))
            item["instances"] = torch.full_like(item["instances"], VOID)
            item["classes"] = torch.full_like(item["classes"], VOID)
            return item

    model = build_model(make_config_dict())
    data = InstanceDataModule(train=None, val=AllVoid(num_images=4, image_size=32), val_batch_size=2)
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    with pytest.raises(ValueError, match=r"validation data have no valid pixels.*data\.val"):
        trainer.validate(model, datamodule=data, verbose=False)


def make_config_dict():
    from hydra_configs import TINY, compose_config

    return compose_config("train", Path("unused"), *TINY)


def test_diverging_training_stops_naming_the_step(make_config):
    cfg = make_config(
        "model.optimizer._target_=torch.optim.SGD", "model.optimizer.lr=1e30", "model.scheduler=null"
    )
    with pytest.raises(FloatingPointError, match=r"global step 1 .*model\.optimizer\.lr"):
        train(cfg)


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.batch_size=big", "full_key: data.batch_size"),
        ("data.num_workrs=2", "Key 'num_workrs' not in 'DataSchema'"),
        ("model.embed_dim=wide", "full_key: model.embed_dim"),
    ],
)
def test_wrong_data_and_model_values_name_their_key_when_composed(override, message, tmp_path):
    from hydra_configs import compose_config

    with pytest.raises(Exception) as error:  # Hydra's composition error, caused by OmegaConf's
        compose_config("train", tmp_path, override)
    assert message in f"{error.value} {error.value.__cause__}"


@pytest.mark.parametrize(
    "override,message",
    [
        (
            "model.embed_dimm=3",
            "model.embed_dimm: python -m dsc.train's config has no such key; did you mean model.embed_dim",
        ),
        ("loss=no_such_loss", "loss=no_such_loss: no such choice; the options are contrastive, "),
        ("trainer.max_epochs=three", "Value 'three' of type 'str' could not be converted to Integer"),
        ("loss.sample_size=many", "(Error merging override loss.sample_size=many)"),
        ("trainer.no_such_flag=1", "trainer.no_such_flag: python -m dsc.train's config has no such key"),
    ],
)
def test_bad_overrides_give_hydras_error(override, message, tmp_path):
    result = run_dsc_train(override, "hydra.run.dir=.", cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr + result.stdout
    assert len((result.stderr + result.stdout).strip().splitlines()) == 1


def test_every_config_option_composes_and_instantiates(make_config):
    import hydra

    for group in (
        "backbone",
        "loss",
        "rounding",
        "data",
        "trainer",
        "logger",
        "callbacks",
        "debug",
        "experiment",
    ):
        for option in sorted((CONFIG_DIR / group).glob("*.yaml")):
            # No ImageNet weights on CI machines: FCN-8s from random weights (loading has its own tests).
            # The tiny overrides resize the built-in shapes; other data have no such keys.
            tiny = group not in ("data", "experiment") or option.stem.startswith("shapes")
            extra = CUSTOM_NETWORK if (group, option.stem) == ("backbone", "custom") else []
            cfg = make_config(f"{group}={option.stem}", *extra, tiny=tiny)
            if cfg.backbone.get("weights") == "imagenet":
                cfg.backbone.weights = None  # no ImageNet file on CI; loading has its own tests
            for node in ("backbone", "loss", "rounding"):
                assert hydra.utils.instantiate(cfg[node]) is not None, (group, option.stem, node)


@pytest.mark.slow
def test_configs_are_found_after_a_plain_install_from_any_directory(tmp_path):
    """Hydra issue #2125: a non-editable install must ship conf/ inside the package."""
    root = Path(__file__).resolve().parents[1]
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            site,
            root,
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run(
        [sys.executable, "-c", "import dsc; print(dsc.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert where.stdout.startswith(str(site))
    result = run_dsc_train(
        "debug=fdr", "data.train.num_images=8", "data.val.num_images=4", cwd=elsewhere, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(elsewhere.glob("logs/debug/runs/*/metrics.json"))


@pytest.mark.slow
def test_main_job_with_defaults_separates_instances(tmp_path):
    """`python -m dsc.train` as a user runs it: the default run's quality on the built-in data, and
    a console that ends saying where things went, without Lightning's tips and known warnings."""
    result = run_dsc_train(cwd=tmp_path, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    console = result.stdout + result.stderr
    assert "where things went:" in console and "python -m dsc.predict ckpt_path=" in console
    assert "Tip:" not in console and "weights_only" not in console and "LeafSpec" not in console
    assert "Modules in train mode" not in console and "network: SmallFCN" in console
    (log_file,) = tmp_path.glob("logs/train/runs/*/train.log")
    assert "GPU available" in log_file.read_text() and "where things went:" in log_file.read_text()
    (metrics_file,) = tmp_path.glob("logs/train/runs/*/metrics.json")
    metrics = json.loads(metrics_file.read_text())
    assert metrics["val/pairwise_fg_f1"] >= 0.90
    assert metrics["val/semantic_oracle/pairwise_fg_f1"] <= 0.75
    assert metrics["val/pairwise_f1"] > metrics["val/semantic_oracle/pairwise_f1"]
    assert "fg semantic oracle" in result.stdout + result.stderr


@pytest.mark.slow
@needs_voc
def test_fcn8_trains_on_the_official_voc_sample(make_config, tmp_path):
    """FCN-8s (random weights: CI has no ImageNet file) on the real VOC image, augmented."""
    voc = VOC_SAMPLE
    cfg = make_config(
        "data=voc",
        f"paths.voc_root={voc}",
        "data.train.transform.crop_size=64",
        "data.num_workers=0",
        "data.val.split=train",
        "backbone=fcn8",
        "backbone.weights=null",
        "model.embed_dim=21",
        "loss.sample_size=256",
        "loss.sampling=balanced",
        "debug=fdr",
        tiny=False,
    )
    _, metrics = train(cfg)
    assert 0.0 <= metrics["val/pairwise_fg_f1"] <= 1.0
    # A dog and a chair: two classes, one instance each, so the class partition separates them.
    assert metrics["val/semantic_oracle/pairwise_fg_f1"] == 1.0


def test_help_lists_only_real_choices(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "dsc.train", "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == entry_help(CONFIG_DIR, "train")  # dsc's own listing (dsc.cli.help)
    assert (
        "[spectral_frobenius] contrastive, cross_entropy, discriminative, spectral_frobenius" in result.stdout
    )
    assert "schema" not in result.stdout


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.max_epochs=0", r"trainer\.max_epochs=0 trains nothing"),
        ("trainer.max_steps=0", r"trainer\.max_steps=0 trains nothing"),
        ("model.optimizer.lr=0", r"model\.optimizer\.lr=0: the weights would not move"),
        ("model.optimizer.lr=-0.01", r"model\.optimizer\.lr=-0\.01"),
        (
            "data.batch_size=-1",
            r"data\.batch_size=-1: the number of images per training batch must be at least 1",
        ),
        ("data.val_batch_size=0", r"data\.val_batch_size=0: .* at least 1"),
        ("data.num_workers=-2", r"data\.num_workers=-2: .* at least 0"),
        ("model.num_classes=-1", r"model\.num_classes=-1"),
        ("model.optimizer.lr=nan", r"model\.optimizer\.lr=nan: not a finite number"),
        ("model.optimizer.weight_decay=inf", r"model\.optimizer\.weight_decay=inf: not a finite"),
        ("trainer.max_epochs=-2", r"trainer\.max_epochs=-2: must be at least -1 \(-1: no limit\)"),
        ("trainer.log_every_n_steps=-3", r"trainer\.log_every_n_steps=-3: must be at least 0"),
        ("+trainer.limit_train_batches=0", r"trainer\.limit_train_batches=0 runs no batch"),
        ("+trainer.limit_val_batches=0.0", r"trainer\.limit_val_batches=0(\.0)? runs no batch"),
        (
            "model.embed_dim=0",
            r"model\.embed_dim=0 and model\.num_classes=0: the network would output nothing",
        ),
    ],
)
def test_runs_that_would_train_nothing_are_refused_before_any_work(make_config, tmp_path, override, message):
    from dsc.contracts import InvalidInputError

    with pytest.raises(InvalidInputError, match=message):
        train(make_config(override))
    assert not (tmp_path / "metrics.json").exists() and not (tmp_path / "checkpoints").exists()


def test_a_run_that_fails_before_its_first_step_leaves_no_checkpoint_and_no_block(make_config, tmp_path):
    """The first training batch fails (a callback raises before the optimizer steps): no last.ckpt,
    and the corrected command starts in the same folder."""
    with pytest.raises(RuntimeError, match="before the first step"):
        train(make_config("+callbacks.fail._target_=kill_switch.FailBeforeFirstStep"))
    assert not list((tmp_path / "checkpoints").glob("*.ckpt"))
    train(make_config())
    assert (tmp_path / "metrics.json").exists()


def test_where_things_went_lists_every_kind_of_file_the_run_wrote(make_config, tmp_path, caplog):
    with caplog.at_level("INFO", logger="dsc.train"):
        train(make_config("logger=many", "callbacks.validation_images.num_images=1"))
    (block,) = [message for message in caplog.messages if message.startswith("where things went:")]
    # Dot folders here are the test's home (W&B's cache); composed in a test, Hydra writes no .hydra/.
    written = {path.name for path in tmp_path.iterdir() if not path.name.startswith(".")}
    assert {"checkpoints", "metrics.json", "csv", "tensorboard", "wandb", "images"} <= written
    for name in written:
        assert str(tmp_path / name) in block, f"{name} is not listed"


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_mixed_precision_trains_on_the_cpu(make_config, tmp_path, precision):
    import math

    _, metrics = train(make_config(f"trainer.precision={precision}"))
    assert math.isfinite(metrics["val/loss"]) and 0 < metrics["val/pairwise_fg_f1"] <= 1


def test_a_checkpoint_write_that_fails_names_the_file_and_the_reason(tmp_path):
    """A file-size limit below a checkpoint's size: Lightning's write fails as on a full disk."""
    import resource
    import signal

    from hydra_configs import TINY

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))  # a checkpoint is ~0.5 MB

    result = subprocess.run(
        [sys.executable, "-m", "dsc.train", *TINY, "logger=csv", f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=300, preexec_fn=limit_file_size,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "HOME": str(tmp_path)},
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    checkpoints = tmp_path / "run" / "checkpoints"
    assert re.search(rf"error: cannot write {re.escape(str(checkpoints))}/\S+\.ckpt: File too large", output)
    assert "Traceback" not in output
    assert not [path.name for path in checkpoints.iterdir() if "partial" in path.name]
