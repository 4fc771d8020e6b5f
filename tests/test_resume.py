"""A run killed mid-epoch and resumed with ckpt_path=last ends as the uninterrupted run."""

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
    "callbacks.step_checkpoint.every_n_train_steps=2",
    "callbacks.validation_images.num_images=1",
    "logger=many",
]


def run(output_dir: Path, *overrides: str, home: Path) -> subprocess.CompletedProcess:
    # The tests folder on the path: the kill switch callback lives there.
    env = offline_environment(home, Path(__file__).parent)
    return run_dsc_train(*SETUP, *overrides, f"hydra.run.dir={output_dir}", env=env)


def last_validation(run_dir: Path) -> dict[str, float]:
    """The validation scores logged at the end of the second epoch (CSV logger)."""
    with (run_dir / "csv" / "metrics.csv").open() as handle:
        rows = [row for row in csv.DictReader(handle) if row["epoch"] == "1" and row.get("val/loss")]
    assert len(rows) == 1
    return {name: float(value) for name, value in rows[0].items() if name.startswith("val/") and value}


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_metrics_and_wandb_run(tmp_path):
    uninterrupted, killed = tmp_path / "uninterrupted", tmp_path / "killed"
    assert run(uninterrupted, home=tmp_path).returncode == 0

    # Killed at step 7, in the second epoch; its last checkpoint is from step 6, mid-epoch.
    crash = run(
        killed, "+callbacks.kill._target_=kill_switch.KillAtStep", "+callbacks.kill.step=7", home=tmp_path
    )
    assert crash.returncode == -9, crash.stderr[-3000:]
    assert not (killed / "metrics.json").exists()
    last = torch.load(killed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 6 and last["epoch"] == 1

    resumed = run(killed, "ckpt_path=last", home=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # The same weights at the end, and the same scores of the last epoch (the best checkpoint,
    # which the final metrics score, may predate the kill).
    final = [
        torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
        for run_dir in (uninterrupted, killed)
    ]
    assert final[1]["global_step"] == final[0]["global_step"] == 8
    for name, weights in final[0]["state_dict"].items():
        torch.testing.assert_close(final[1]["state_dict"][name], weights, rtol=1e-6, atol=1e-7, msg=name)
    expected, got = (last_validation(run_dir) for run_dir in (uninterrupted, killed))
    assert expected.keys() == got.keys() and len(expected) > 5
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-6, abs=1e-9), name

    # The CSV log of the first part is kept beside the new one.
    (kept,) = (killed / "csv").glob("metrics.before_resume_*.csv")
    with kept.open() as handle:
        assert "0" in {row["epoch"] for row in csv.DictReader(handle)}  # rows flushed before the kill

    # Both parts of the killed run logged into one W&B run.
    runs = sorted(killed.glob("wandb/offline-run-*"))
    assert len(runs) == 2
    assert len({path.name.rsplit("-", 1)[-1] for path in runs}) == 1


def test_ckpt_path_last_without_a_checkpoint_starts_fresh_and_a_missing_file_is_named(tmp_path):
    from dsc.checkpoints import resume_path

    assert resume_path("last", tmp_path / "checkpoints") is None
    assert resume_path(None, tmp_path) is None
    with pytest.raises(FileNotFoundError, match=r"nowhere\.ckpt"):
        resume_path(str(tmp_path / "nowhere.ckpt"), tmp_path)
