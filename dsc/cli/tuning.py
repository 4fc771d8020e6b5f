"""The same tuning budget for every method: N trials of Optuna's TPE over the search space a method
declares beside its recipe (``conf/search_space/<experiment>.yaml``), each trial one training scored
on the validation split (never the test split).

A search space maps each key to tune (a dotted config key, or a group such as ``loss``) to either
``{low, high[, log][, int]}`` (a number) or ``{choices: [...]}``. Trial n's suggestion depends only
on the trials before it and n (the sampler is seeded per trial), and every trial writes its
parameters before it trains, so a killed search, run again, reuses the finished trials, retrains an
unfinished one with the same parameters and continues where it stopped.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dsc.contracts import InvalidInputError, MissingFileError
from dsc.outputs.files import write_text

log = logging.getLogger(__name__)
PARAMS_FILE = "params.json"
FAILED_FILE = "failed.txt"
_NUMBER_KEYS = {"low", "high", "log", "int"}


class TrialFailed(Exception):
    """A trial's training failed (a non-finite loss, an error): the reason, in one line."""


@dataclass(frozen=True)
class TrialResult:
    """One trial: its number, parameters (key → value), score on val (None when it failed) and why
    it failed (None when it did not)."""

    number: int
    params: dict[str, Any]
    value: float | None
    failure: str | None


def read_search_space(path: Path) -> dict[str, Any]:
    """key → an Optuna distribution, from a search-space file; ``InvalidInputError`` naming the file
    and the key for an entry that is neither a range nor choices."""
    import optuna

    if not path.is_file():
        raise MissingFileError(
            f"no search space {path}: a tuned method declares the keys it tunes there "
            "(conf/search_space/<experiment>.yaml, key: {low, high, log} or {choices: [...]})"
        )
    entries = OmegaConf.to_container(OmegaConf.load(path))
    if not isinstance(entries, dict) or not entries:
        raise InvalidInputError(f"search space {path}: expected a mapping of keys to ranges or choices")
    space = {}
    for key, entry in entries.items():
        where = f"search space {path}, key {key}"
        if isinstance(entry, dict) and set(entry) == {"choices"} and entry["choices"]:
            space[key] = optuna.distributions.CategoricalDistribution(list(entry["choices"]))
        elif isinstance(entry, dict) and {"low", "high"} <= set(entry) <= _NUMBER_KEYS:
            low, high, log_scale = entry["low"], entry["high"], bool(entry.get("log", False))
            if not all(isinstance(v, int | float) and math.isfinite(v) for v in (low, high)) or low >= high:
                raise InvalidInputError(f"{where}: low and high must be finite numbers with low < high")
            if log_scale and low <= 0:
                raise InvalidInputError(f"{where}: a log range needs low > 0")
            space[key] = _number_distribution(low, high, log_scale, bool(entry.get("int", False)))
        else:
            raise InvalidInputError(f"{where}: give {{low, high[, log][, int]}} or {{choices: [...]}}")
    return space


def _number_distribution(low: float, high: float, log_scale: bool, whole: bool) -> Any:
    """Optuna's distribution of a range: ``FloatDistribution``/``IntDistribution`` (Optuna ≥ 3), or
    the uniform and log-uniform ones of Optuna 2 (which hydra-optuna-sweeper installs)."""
    from optuna import distributions

    if hasattr(distributions, "FloatDistribution"):
        if whole:
            return distributions.IntDistribution(int(low), int(high), log=log_scale)
        return distributions.FloatDistribution(float(low), float(high), log=log_scale)
    if whole:
        kind = distributions.IntLogUniformDistribution if log_scale else distributions.IntUniformDistribution
        return kind(int(low), int(high))
    kind = distributions.LogUniformDistribution if log_scale else distributions.UniformDistribution
    return kind(float(low), float(high))


def check_search_space(space: Mapping[str, Any], recipe: DictConfig, source: str) -> None:
    """Refuse, before any training, a key of ``space`` that the composed recipe lacks, naming it."""
    marker = object()
    for key in space:
        if OmegaConf.select(recipe, key, default=marker, throw_on_missing=False) is marker:
            raise InvalidInputError(
                f"{source} tunes {key}, which the recipe's config lacks: name a key that "
                "`python -m dsc.train experiment=<recipe> --cfg job` prints"
            )


def overrides_of(params: Mapping[str, Any]) -> list[str]:
    """Command-line overrides for a trial's parameters (``key=value``)."""

    def written(value: Any) -> str:
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, str) and not value.replace("_", "").isalnum():
            return json.dumps(value)
        return str(value)

    return [f"{key}={written(value)}" for key, value in params.items()]


def _rounded(params: Mapping[str, Any]) -> dict[str, Any]:
    """Floats to 4 significant digits: what a trial trains with is what its table shows."""
    return {
        key: float(f"{value:.4g}") if isinstance(value, float) else value for key, value in params.items()
    }


def tune(
    space: Mapping[str, Any],
    run_trial: Callable[[int, dict[str, Any]], float],
    trials: int,
    directory: Path,
    seed: int = 0,
    startup_trials: int = 4,
) -> list[TrialResult]:
    """Run ``trials`` trials of TPE (maximising), trial n in ``directory/trial_<n>``: ``run_trial(n,
    params)`` trains and returns the score on val, raising ``TrialFailed`` for a failed training.
    A trial already run (its ``params.json`` and a score or ``failed.txt``) is reused."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    results = []
    for number in range(trials):
        trial_dir = directory / f"trial_{number:03d}"
        params_file = trial_dir / PARAMS_FILE
        asked = None
        if params_file.is_file():
            params = json.loads(params_file.read_text())
        else:
            study.sampler = optuna.samplers.TPESampler(
                seed=seed * 1000 + number, n_startup_trials=startup_trials
            )
            asked = study.ask(dict(space))
            params = _rounded(asked.params)
            trial_dir.mkdir(parents=True, exist_ok=True)
            write_text(params_file, json.dumps(params, indent=2) + "\n")
        failed_file = trial_dir / FAILED_FILE
        value, failure = None, None
        if failed_file.is_file():
            failure = failed_file.read_text().strip()
        else:
            try:
                value = float(run_trial(number, params))
                if not math.isfinite(value):
                    raise TrialFailed(f"its score on val is {value}")
            except TrialFailed as error:
                value, failure = None, str(error)
                write_text(failed_file, failure + "\n")
        if failure is not None:
            log.warning("trial %d (%s) failed: %s", number, ", ".join(overrides_of(params)), failure)
        state = optuna.trial.TrialState.COMPLETE if failure is None else optuna.trial.TrialState.FAIL
        if asked is not None:
            if failure is None:
                study.tell(asked, value, state=state)
            else:
                study.tell(asked, state=state)
        else:
            study.add_trial(
                optuna.trial.create_trial(
                    state=state, value=value, params=params, distributions={k: space[k] for k in params}
                )
            )
        results.append(TrialResult(number, params, value, failure))
    return results


def best_trial(results: list[TrialResult]) -> TrialResult | None:
    """The trial with the highest score (the first of equals); None when every trial failed."""
    finished = [result for result in results if result.value is not None]
    return max(finished, key=lambda result: result.value, default=None)
