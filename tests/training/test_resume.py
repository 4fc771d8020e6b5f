"""Runs stopped mid-epoch (killed, signalled, failed) and resumed with ckpt_path=last end as the
uninterrupted run; what a resume may and may not change; checkpoints that cannot be resumed."""

import csv
import subprocess
from pathlib import Path

import pytest
import torch
from hydra_configs import offline_environment, run_dsc_train

# 16 training images in batches of 4: 4 steps per epoch, 8 in all; last.ckpt every 2 steps.
SETUP = [
    "data.train.num_images=16",
    "data.val.num_images=6",
    "data.batch_size=4",
    "data.val_batch_size=3",
    "loss.sample_size=128",
    "trainer.max_epochs=2",
    "trainer.accelerator=cpu",
    "trainer.deterministic=true",
    "trainer.num_sanity_val_steps=0",
    "callbacks.last_checkpoint.every_n_train_steps=2",
    "callbacks.validation_images.num_images=1",
    "logger=many",
]


def run(output_dir: Path, *overrides: str, home: Path) -> subprocess.CompletedProcess:
    # The tests folder on the path: the kill switch callback lives there.
    env = offline_environment(home, Path(__file__).parents[1])  # tests/: kill_switch.py
    return run_dsc_train(*SETUP, *overrides, f"hydra.run.dir={output_dir}", env=env)


def last_validation(run_dir: Path) -> dict[str, float]:
    """The validation scores logged at the end of the second epoch (CSV logger)."""
    with (run_dir / "csv" / "metrics.csv").open() as handle:
        rows = [row for row in csv.DictReader(handle) if row["epoch"] == "1" and row.get("val/loss")]
    assert len(rows) == 1
    return {name: float(value) for name, value in rows[0].items() if name.startswith("val/") and value}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """The run directory of the setup trained without interruption."""
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    result = run(run_dir, home=run_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def stop_switch(how: str, step: int = 7, when: str = "batch_end") -> list[str]:
    """The overrides that stop the setup at ``step`` (7: in the second epoch) by ``how``."""
    return [
        "+callbacks.stop._target_=kill_switch.StopAtStep",
        f"+callbacks.stop.step={step}",
        f"+callbacks.stop.how={how}",
        f"+callbacks.stop.when={when}",
    ]


def stopped_run(run_dir: Path, how: str, home: Path, step: int = 7, when: str = "batch_end"):
    """The setup stopped at ``step`` by ``how`` (see kill_switch.StopAtStep)."""
    return run(run_dir, *stop_switch(how, step, when), home=home)


def resume(run_dir: Path, home: Path) -> None:
    # Recorded overrides that add keys or name code are not applied from the file: the command gives
    # the stop switch again (it stops first starts only); the others come back from the record.
    resumed = run(run_dir, *stop_switch("SIGKILL"), "ckpt_path=last", home=home)
    assert resumed.returncode == 0, resumed.stderr[-3000:]


def assert_same_end(uninterrupted: Path, resumed: Path) -> None:
    """The same weights at the end, and the same scores of the last epoch (the best checkpoint,
    which the final metrics score, may predate the interruption)."""
    final = [
        torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
        for run_dir in (uninterrupted, resumed)
    ]
    assert final[1]["global_step"] == final[0]["global_step"] == 8
    for name, weights in final[0]["state_dict"].items():
        torch.testing.assert_close(final[1]["state_dict"][name], weights, rtol=1e-6, atol=1e-7, msg=name)
    expected, got = (last_validation(run_dir) for run_dir in (uninterrupted, resumed))
    assert expected.keys() == got.keys() and len(expected) > 5
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-6, abs=1e-9), name


def saved_step(run_dir: Path) -> int:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)[
        "global_step"
    ]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_metrics_and_wandb_run(uninterrupted, tmp_path):
    killed = tmp_path / "killed"
    crash = stopped_run(killed, "SIGKILL", home=tmp_path)
    assert crash.returncode == -9, crash.stderr[-3000:]
    assert not (killed / "metrics.json").exists()
    # Nothing could be saved at the kill: the last checkpoint is from step 6, mid-epoch.
    last = torch.load(killed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 6 and last["epoch"] == 1
    assert not list((killed / "checkpoints").glob("last-v*.ckpt"))

    resume(killed, home=tmp_path)
    assert_same_end(uninterrupted, killed)

    # The CSV log of the first part is kept beside the new one.
    (kept,) = (killed / "csv").glob("metrics.before_resume_*.csv")
    with kept.open() as handle:
        assert "0" in {row["epoch"] for row in csv.DictReader(handle)}  # rows flushed before the kill

    # Both parts of the killed run logged into one W&B run.
    runs = sorted(killed.glob("wandb/offline-run-*"))
    assert len(runs) == 2
    assert len({path.name.rsplit("-", 1)[-1] for path in runs}) == 1
    # Hydra's record of the first start is kept; the resume has its own.
    assert "+callbacks.stop.how=SIGKILL" in (killed / ".hydra" / "overrides.yaml").read_text()
    (later,) = (path for path in (killed / ".hydra").iterdir() if path.is_dir())
    assert "ckpt_path=last" in (later / "overrides.yaml").read_text()


@pytest.mark.slow
def test_sigterm_saves_the_newest_state_exits_143_and_resumes_to_the_same_end(uninterrupted, tmp_path):
    stopped = tmp_path / "sigterm"
    result = stopped_run(stopped, "SIGTERM", home=tmp_path)
    assert result.returncode == 143, result.stderr[-3000:]
    assert "stopped by SIGTERM" in result.stdout + result.stderr
    assert saved_step(stopped) == 7  # not the step checkpoint of step 6: the state at the signal
    resume(stopped, home=tmp_path)
    assert_same_end(uninterrupted, stopped)


@pytest.mark.slow
def test_sighup_saves_the_newest_state_and_exits_129(tmp_path):
    stopped = tmp_path / "sighup"
    result = stopped_run(stopped, "SIGHUP", home=tmp_path)
    assert result.returncode == 129, result.stderr[-3000:]
    assert "stopped by SIGHUP; resume with `ckpt_path=last" in result.stdout + result.stderr
    assert saved_step(stopped) == 7


@pytest.mark.slow
@pytest.mark.parametrize("how,code", [("SIGINT", 130), ("error", 1)])
def test_sigint_and_failures_exit_non_zero_after_saving_last_ckpt(how, code, tmp_path):
    stopped = tmp_path / how
    result = stopped_run(stopped, how, home=tmp_path)
    assert result.returncode == code, result.stderr[-3000:]
    # Ctrl+C at the end of step 7 stops at the next batch boundary; an error saves where it struck.
    assert saved_step(stopped) == (8 if how == "SIGINT" else 7)
    assert not (stopped / "metrics.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "step, when, saved",
    [(0, "batch_start", 1), (5, "batch_end", 6), (4, "validation", 5)],
    ids=["in the first step", "mid-epoch", "during validation"],
)
def test_resume_after_ctrl_c_is_exact(uninterrupted, tmp_path, step, when, saved):
    stopped = tmp_path / "ctrl_c"
    result = stopped_run(stopped, "SIGINT", home=tmp_path, step=step, when=when)
    assert result.returncode == 130, result.stderr[-3000:]
    assert saved_step(stopped) == saved  # the batch that was running finished, then the run stopped
    resume(stopped, home=tmp_path)
    assert_same_end(uninterrupted, stopped)


def test_ckpt_path_last_without_a_checkpoint_starts_fresh_and_a_missing_file_is_named(tmp_path):
    from dsc.training.resume import resume_path

    assert resume_path("last", tmp_path / "checkpoints") is None
    assert resume_path(None, tmp_path) is None
    with pytest.raises(FileNotFoundError, match=r"nowhere\.ckpt"):
        resume_path(str(tmp_path / "nowhere.ckpt"), tmp_path)


@pytest.mark.parametrize("given, said", [("folder", "is a folder, not a file"), ("/dev/null", "is a device")])
def test_a_folder_or_device_as_checkpoint_is_called_that(tmp_path, given, said):
    from dsc.contracts import InvalidInputError
    from dsc.training.checkpoint_record import read_checkpoint
    from dsc.training.resume import resume_path

    path = tmp_path if given == "folder" else Path(given)
    with pytest.raises(InvalidInputError, match=rf"ckpt_path={path} {said}"):
        resume_path(str(path), tmp_path)
    with pytest.raises(InvalidInputError, match=rf"checkpoint {path} {said}"):
        read_checkpoint(path)


def test_another_programs_lightning_checkpoint_is_named_before_lightning_reads_it(make_config, tmp_path):
    import pytorch_lightning as pl
    from pytorch_lightning.demos.boring_classes import BoringModel

    from dsc.contracts import InvalidInputError
    from dsc.train import train

    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(BoringModel())
    plain = tmp_path / "elsewhere" / "boring.ckpt"
    trainer.save_checkpoint(plain)
    with pytest.raises(
        InvalidInputError, match=r"boring\.ckpt is not a dsc checkpoint \(no record of the run"
    ):
        train(make_config(f"ckpt_path={plain}"))
    assert not (tmp_path / "checkpoints").exists() or not list((tmp_path / "checkpoints").iterdir())


def test_a_fresh_run_in_a_used_run_directory_is_refused_and_loses_nothing(make_config, tmp_path):
    from dsc.train import train

    train(make_config())
    before = (tmp_path / "csv" / "metrics.csv").read_text()
    with pytest.raises(FileExistsError, match=r"ckpt_path=last hydra\.run\.dir=.*new directory"):
        train(make_config())
    assert (tmp_path / "csv" / "metrics.csv").read_text() == before


def test_resume_applies_the_recorded_overrides_and_refuses_changes_to_the_run(make_config, tmp_path):
    from dsc.train import train

    train(make_config("model.embed_dim=8", "callbacks.last_checkpoint.every_n_train_steps=1"))
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert "model.embed_dim=8" in checkpoint["dsc_overrides"]

    with pytest.raises(ValueError, match=r"model\.embed_dim: 8 → 16"):
        train(make_config("ckpt_path=last", "model.embed_dim=16"))
    with pytest.raises(ValueError, match=r"model\.optimizer\.lr: 0\.003 → 0\.1"):
        train(make_config("ckpt_path=last", "model.optimizer.lr=0.1"))
    with pytest.raises(ValueError, match=r"model\.scheduler\.T_max: 1 → 3 \(trainer\.max_epochs"):
        train(make_config("ckpt_path=last", "trainer.max_epochs=3"))

    # Without model.embed_dim=8 on the command line, the run's own value comes back.
    train(make_config("ckpt_path=last", "data.num_workers=0", "callbacks.validation_images.num_images=1"))
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["dsc_config"]["model"]["embed_dim"] == 8
    assert checkpoint["dsc_config"]["callbacks"]["validation_images"]["num_images"] == 1


def test_extending_a_run_without_a_schedule_trains_on(make_config, tmp_path):
    from dsc.train import train

    train(make_config("model.scheduler=null"))
    train(make_config("ckpt_path=last", "trainer.max_epochs=2"))
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["epoch"] == 1 and checkpoint["global_step"] == 8
    assert checkpoint["dsc_config"]["trainer"]["max_epochs"] == 2


def test_recorded_overrides_apply_as_literals_the_command_line_replaces(tmp_path):
    from dsc.training.resume import CONFIG_DIR, recorded_literals

    source = tmp_path / "last.ckpt"
    recorded = ["model.embed_dim=8", "+callbacks.stop.step=7", "data=voc", "seed=1"]
    current = ["model.embed_dim=16", "+callbacks.stop.step=9", "data=coco", "ckpt_path=last"]
    assert recorded_literals(recorded, current, source, CONFIG_DIR) == ["seed=1"]


@pytest.mark.parametrize(
    "line, why",
    [
        ("model.embed_dim='${oc.create:x}'", "interpolation"),
        ("model.embed_dim=${oc.create:{_target_:os.system}}", "does not parse"),
        ("trainer.max_epochs='${oc.env:HOME}'", "interpolation"),
        ("hydra.searchpath=[file:///tmp/elsewhere]", "only the command sets"),
        ("paths.output_dir=/tmp/elsewhere", "only the command sets"),
        ("trusted_targets=[os.system]", "only the command sets"),
        ("callbacks.last_checkpoint.dirpath=/tmp/elsewhere", "moves where the run writes"),
        ("logger.csv.save_dir=/tmp/elsewhere", "moves where the run writes"),
        ("backbone=../../../tmp/evil", "not one of dsc's packaged configs"),
        ("backbone=resnet9000", "not one of dsc's packaged configs"),
        ("+callbacks.evil._target_=os.system", "adds, deletes"),
        ("model.loss._target_=os.system", "names code"),
        ("~callbacks", "adds, deletes"),
        ("seed=1,2", "sweeps"),
        ("model.embed_dim=[", "does not parse"),
    ],
)
def test_recorded_overrides_that_are_no_plain_literals_are_refused(tmp_path, line, why):
    from dsc.contracts import InvalidInputError
    from dsc.training.resume import CONFIG_DIR, recorded_literals

    source = tmp_path / "last.ckpt"
    with pytest.raises(InvalidInputError, match=rf"last\.ckpt .*{why}"):
        recorded_literals([line], ["ckpt_path=last"], source, CONFIG_DIR)


def test_truncated_or_diverged_checkpoints_are_named_with_the_intact_ones(tmp_path):
    from dsc.training.resume import resume_path

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    record = {"dsc_config": {}, "dsc_overrides": [], "dsc_class_names": None}
    state = {"state_dict": {"weight": torch.ones(3)}, "global_step": 4, **record}
    torch.save(state, folder / "epoch_000.ckpt")
    torch.save(state, folder / "last.ckpt")
    data = (folder / "last.ckpt").read_bytes()
    (folder / "last.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"last\.ckpt cannot be read .*truncated.*intact .*epoch_000\.ckpt"):
        resume_path("last", folder)

    torch.save({"state_dict": {"weight": torch.tensor([1.0, float("nan")])}, **record}, folder / "last.ckpt")
    with pytest.raises(ValueError, match=r"non-finite weights \(weight\).*epoch_000\.ckpt"):
        resume_path("last", folder)
    (folder / "epoch_000.ckpt").unlink()
    with pytest.raises(ValueError, match="no intact checkpoint"):
        resume_path(str(folder / "last.ckpt"), folder)
    assert resume_path(None, folder) is None
