"""Lightning's DDP under Hydra: one output directory per job, also in multiruns.

Lightning's ``strategy=ddp`` re-runs the entry point once per extra device. Under Hydra it
re-runs ``sys.argv`` with ``hydra.run.dir`` set to the *run* directory pattern, which is right for a
single run but wrong for a multirun: the children would start the whole sweep again, in the wrong
directory (Lightning #11300, Hydra #2070). ``hydra_child_command`` builds the child's command from
the current *job* instead (its overrides and output directory), and ``ddp_job`` gives each job of a
sweep a clean environment, so the next job launches its own processes.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence

import torch.distributed

# Set by Lightning's launcher in the launching process; left over, they would make the next job of
# a sweep believe its processes already exist.
LAUNCHER_ENVIRONMENT = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
# Command-line flags of a Hydra app that take a value and choose the primary config.
_CONFIG_FLAGS = ("--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd")
# Hydra overrides a child must not repeat: it is one run of one job, with its directory given.
_JOB_ONLY_HYDRA_KEYS = (
    "hydra.run",
    "hydra.sweep",
    "hydra.launcher",
    "hydra.sweeper",
    "hydra.mode",
    "hydra.job.name",
)
_JOB_ONLY_HYDRA_GROUPS = ("hydra/launcher", "hydra/sweeper")


def _config_flags(argv: Sequence[str]) -> list[str]:
    """The flags of ``argv`` that choose the primary config, with their values."""
    kept: list[str] = []
    for index, argument in enumerate(argv):
        flag, _, value = argument.partition("=")
        if flag in _CONFIG_FLAGS:
            kept += [argument] if value else [argument, argv[index + 1]]
    return kept


def _child_hydra_overrides(overrides: Sequence[str]) -> list[str]:
    def job_only(override: str) -> bool:
        key = override.lstrip("+~").split("=", 1)[0].removeprefix("override ").strip()
        return key.startswith(_JOB_ONLY_HYDRA_KEYS) or key in _JOB_ONLY_HYDRA_GROUPS

    return [override for override in overrides if not job_only(override)]


def hydra_child_command(local_rank: int) -> tuple[list[str], str]:
    """The command and working directory for DDP process ``local_rank`` of the current Hydra job.

    It reruns the entry point on this job's config (the job's own overrides, so a sweep's values and
    not the sweep) in this job's output directory, without writing a second ``.hydra`` folder.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd, to_absolute_path

    import __main__

    hydra_config = HydraConfig.get()
    if __main__.__spec__ is None:
        command = [sys.executable, to_absolute_path(sys.argv[0])]
    else:
        command = [sys.executable, "-m", __main__.__spec__.name]
    command += _config_flags(sys.argv[1:])
    command += list(hydra_config.overrides.task)
    command += _child_hydra_overrides(hydra_config.overrides.hydra)
    command += [
        "hydra.mode=RUN",
        f"hydra.run.dir={_quoted(hydra_config.runtime.output_dir)}",
        f"hydra.job.name={hydra_config.job.name}_ddp_process_{local_rank}",
        "hydra.output_subdir=null",
    ]
    return command, get_original_cwd()


def _quoted(value: str) -> str:
    """A string as a quoted value of Hydra's override grammar."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def is_first_process() -> bool:
    """Whether this is the first process of a run (rank zero), before a trainer exists: the others
    are started by Lightning's launcher (``LOCAL_RANK``), torchrun (``RANK``) or SLURM (``SLURM_PROCID``)."""
    return all(os.environ.get(name, "0") == "0" for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID"))


def use_job_directories_for_ddp() -> None:
    """Make Lightning's subprocess launcher start DDP processes with ``hydra_child_command``."""
    from pytorch_lightning.strategies.launchers import subprocess_script

    if not hasattr(subprocess_script, "_hydra_subprocess_cmd"):
        raise RuntimeError(
            "this pytorch-lightning no longer has strategies.launchers.subprocess_script."
            "_hydra_subprocess_cmd; dsc.training.distributed needs updating for it"
        )
    subprocess_script._hydra_subprocess_cmd = hydra_child_command


@contextlib.contextmanager
def ddp_job() -> Iterator[None]:
    """Run one training job; afterwards, end its process group and remove what Lightning's launcher
    put into the environment, so that the next job of a multirun starts its own DDP processes.

    Variables that were set before the job (by SLURM, torchrun or the user) are kept.
    """
    before = {name: os.environ.get(name) for name in LAUNCHER_ENVIRONMENT}
    try:
        yield
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
