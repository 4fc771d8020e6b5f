"""Hydra multiruns (basic grid, with DDP; Optuna) and the SLURM launcher's config."""

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra_configs import CONFIG_DIR, offline_environment, run_dsc_train

from dsc.training.distributed import _child_hydra_overrides, _config_flags

TINY_JOB = [
    "data.train.num_images=8",
    "data.val.num_images=5",
    "data.batch_size=2",
    "data.val_batch_size=2",
    "data.train.image_size=32",
    "trainer.max_epochs=1",
    "trainer.accelerator=cpu",
    "trainer.num_sanity_val_steps=0",
    "backbone.norm=group",
    "callbacks.validation_images.num_images=1",
]


def run_multirun(cwd: Path, *overrides: str) -> subprocess.CompletedProcess:
    """``python -m dsc.train -m …`` from cwd, offline and without a W&B login."""
    result = run_dsc_train("-m", *overrides, "hydra.sweep.dir=sweep", cwd=cwd, env=offline_environment(cwd))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return result


@pytest.mark.slow
def test_grid_with_ddp_runs_each_job_in_its_own_directory(tmp_path):
    run_multirun(
        tmp_path,
        "model.embed_dim=8,16",
        "loss.sample_size=64,128",
        "trainer.devices=2",
        "trainer.strategy=ddp",
        "logger=wandb",
        *TINY_JOB,
    )
    sweep = tmp_path / "sweep"
    jobs = sorted(path for path in sweep.iterdir() if path.is_dir() and not path.name.startswith("."))
    assert [job.name for job in jobs] == ["0", "1", "2", "3"]
    grid = set()
    for job in jobs:
        assert "val/pairwise_fg_f1" in json.loads((job / "metrics.json").read_text())
        config = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())
        grid.add((config["model"]["embed_dim"], config["loss"]["sample_size"]))
        # Rank 1 ran this job, here, and did not start a sweep of its own.
        assert (job / "train_ddp_process_1.log").is_file()
        assert len(list(job.glob("wandb/offline-run-*"))) == 1  # one W&B run per job
        checkpoint_weights = next(job.glob("checkpoints/*.ckpt"))
        assert checkpoint_weights.is_file()
    assert grid == {(8, 64), (8, 128), (16, 64), (16, 128)}
    # Nothing was written outside the sweep directory (no stray run directories from rank 1).
    assert sorted(path.name for path in tmp_path.iterdir() if not path.name.startswith(".")) == ["sweep"]


@pytest.mark.slow
def test_optuna_search_returns_the_best_validation_metric(tmp_path):
    run_multirun(tmp_path, "hparams_search=optuna", "hydra.sweeper.n_trials=3", "logger=csv", *TINY_JOB)
    sweep = tmp_path / "sweep"
    scores = [
        json.loads(path.read_text())["val/pairwise_fg_f1"] for path in sorted(sweep.glob("*/metrics.json"))
    ]
    assert len(scores) == 3
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(max(scores))
    assert set(best["best_params"]) == {"model.embed_dim", "loss.sample_size", "model.optimizer.lr"}


def test_slurm_launcher_takes_the_job_shape_from_the_trainer(tmp_path):
    from submitit.slurm import slurm as submitit_slurm

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "hydra/launcher=slurm",
                "trainer=ddp",
                "trainer.devices=4",
                "trainer.num_nodes=2",
                "hydra.launcher.timeout_min=720",
                "hydra.launcher.partition=gpu",
            ],
            return_hydra_config=True,
        )
    GlobalHydra.instance().clear()
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    shape = {key: launcher[key] for key in ("nodes", "gpus_per_node", "tasks_per_node", "timeout_min")}
    assert shape == {"nodes": 2, "gpus_per_node": 4, "tasks_per_node": 4, "timeout_min": 720}

    # The sbatch script submitit writes from these (rendered without a cluster).
    script = submitit_slurm._make_sbatch_string(
        "python -m dsc.train",
        tmp_path,
        nodes=launcher.nodes,
        gpus_per_node=launcher.gpus_per_node,
        ntasks_per_node=launcher.tasks_per_node,
        time=launcher.timeout_min,
        partition=launcher.partition,
        cpus_per_task=launcher.cpus_per_task,
    )
    for line in ("--nodes=2", "--gpus-per-node=4", "--ntasks-per-node=4", "--time=720", "--partition=gpu"):
        assert f"#SBATCH {line}" in script


def test_ddp_children_rerun_the_job_not_the_sweep():
    argv = ["-m", "--config-name", "train", "-cd=extra", "model.embed_dim=8,16", "trainer.devices=2"]
    assert _config_flags(argv) == ["--config-name", "train", "-cd=extra"]
    hydra_overrides = [
        "hydra.sweep.dir=sweep",
        "hydra/launcher=slurm",
        "hydra.launcher.timeout_min=5",
        "hydra.mode=MULTIRUN",
        "hydra.job.chdir=false",
        "hydra/job_logging=disabled",
    ]
    assert _child_hydra_overrides(hydra_overrides) == ["hydra.job.chdir=false", "hydra/job_logging=disabled"]


def test_lightning_joins_the_slurm_tasks_of_a_job_into_one_ddp_run(make_config, monkeypatch):
    """What srun sets for task 5 of a 2-node × 4-task job, as hydra/launcher=slurm asks for it."""
    import hydra
    from pytorch_lightning.plugins.environments import SLURMEnvironment

    slurm = {
        "SLURM_JOB_ID": "1234",
        "SLURM_JOB_NAME": "train",
        "SLURM_NTASKS": "8",
        "SLURM_NTASKS_PER_NODE": "4",
        "SLURM_PROCID": "5",
        "SLURM_LOCALID": "1",
        "SLURM_NODEID": "1",
        "SLURM_NODELIST": "gpu[01-02]",
    }
    for name, value in slurm.items():
        monkeypatch.setenv(name, value)
    # Building the trainer makes this process "rank 5" for Lightning's rank-zero-only helpers:
    # restore them afterwards, or later tests in this process would log nothing.
    from lightning_fabric.utilities import rank_zero as fabric_rank_zero
    from lightning_utilities.core import rank_zero as utilities_rank_zero
    from pytorch_lightning.utilities import rank_zero as lightning_rank_zero

    for module in (fabric_rank_zero, utilities_rank_zero, lightning_rank_zero):
        monkeypatch.setattr(module.rank_zero_only, "rank", module.rank_zero_only.rank)
    cfg = make_config(
        "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2", "trainer.sync_batchnorm=false"
    )
    trainer = hydra.utils.instantiate(cfg.trainer, logger=False)
    environment = trainer.strategy.cluster_environment
    assert isinstance(environment, SLURMEnvironment) and environment.creates_processes_externally
    assert (trainer.world_size, trainer.global_rank, trainer.local_rank, trainer.node_rank) == (8, 5, 1, 1)
    assert lightning_rank_zero.rank_zero_only.rank == 5
