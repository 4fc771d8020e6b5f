"""Tuning with TPE: the same budget for every method, resumable trial by trial, failures named."""

import math

import pytest
from hydra_configs import compose_config

from dsc.cli.entry_point import CONFIG_DIR
from dsc.cli.tuning import (
    TrialFailed,
    best_trial,
    check_search_space,
    overrides_of,
    read_search_space,
    tune,
)
from dsc.contracts import InvalidInputError, MissingFileError


@pytest.fixture
def space(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(
        "model.optimizer.lr: {low: 1.0e-4, high: 1.0e-1, log: true}\n"
        "loss.norm: {choices: [frobenius, nuclear]}\n"
        "rounding.min_size: {low: 0, high: 50, int: true}\n"
    )
    return read_search_space(path)


def score(params):
    """A smooth stand-in for a training: best at lr = 0.01 and the Frobenius norm."""
    return -abs(math.log10(params["model.optimizer.lr"]) + 2) - (params["loss.norm"] == "nuclear")


def test_a_killed_search_continues_as_if_it_had_never_stopped(space, tmp_path):
    uninterrupted = tune(space, lambda number, params: score(params), 8, tmp_path / "a", seed=3)
    calls = []

    def counted(number, params):
        calls.append(number)
        return score(params)

    first = tune(space, counted, 5, tmp_path / "b", seed=3)
    again = tune(space, counted, 8, tmp_path / "b", seed=3)  # trials 0–4 are read back, not asked
    assert [r.params for r in again[:5]] == [r.params for r in first]
    assert [r.params for r in again] == [r.params for r in uninterrupted]
    assert calls == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6, 7]  # run_trial reuses finished trainings
    assert len({r.params["model.optimizer.lr"] for r in uninterrupted}) == 8
    best = best_trial(uninterrupted)
    assert best.value == max(r.value for r in uninterrupted)
    assert all(f"{v:.4g}" == str(v) for r in uninterrupted for v in r.params.values() if isinstance(v, float))


def test_a_failed_or_diverged_trial_is_a_failure_not_the_end(space, tmp_path):
    def flaky(number, params):
        if number == 1:
            raise TrialFailed("training loss is nan at global step 3")
        return float("nan") if number == 2 else score(params)

    results = tune(space, flaky, 4, tmp_path, seed=0)
    assert [r.failure for r in results][:3] == [
        None,
        "training loss is nan at global step 3",
        "its score on val is nan",
    ]
    assert results[3].failure is None and best_trial(results).number in (0, 3)

    # Failed trials are not trained again when the search continues.
    def only_finished(number, params):
        assert number not in (1, 2), "a failed trial trained again"
        return score(params)

    again = tune(space, only_finished, 3, tmp_path, seed=0)
    assert again[1].failure == results[1].failure
    assert best_trial([results[1]]) is None


def test_overrides_are_command_line_values():
    params = {"loss.norm": "nuclear", "model.optimizer.lr": 0.0031, "loss": "spectral_nuclear", "x": True}
    assert overrides_of(params) == [
        "loss.norm=nuclear",
        "model.optimizer.lr=0.0031",
        "loss=spectral_nuclear",
        "x=true",
    ]


@pytest.mark.parametrize(
    "experiment", sorted(path.stem for path in (CONFIG_DIR / "search_space").glob("*.yaml"))
)
def test_every_shipped_search_space_names_keys_of_its_recipe(experiment):
    space = read_search_space(CONFIG_DIR / "search_space" / f"{experiment}.yaml")
    assert {"model.optimizer.lr", "model.optimizer.weight_decay"} <= set(space) and len(space) > 2
    check_search_space(space, compose_config("train", ".", f"experiment={experiment}"), experiment)


def test_a_search_space_naming_a_key_the_recipe_lacks_is_refused(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("loss.temprature: {low: 0.05, high: 0.5}\n")
    recipe = compose_config("train", ".", "experiment=shapes_contrastive")
    with pytest.raises(InvalidInputError, match=r"tunes loss\.temprature, which the recipe's config lacks"):
        check_search_space(read_search_space(path), recipe, f"search space {path}")


@pytest.mark.parametrize(
    "text, message",
    [
        ("lr: {low: 1, high: 0.1}", "low < high"),
        ("lr: {low: 0, high: 0.1, log: true}", "low > 0"),
        ("lr: 0.1", "give {low, high"),
        ("lr: {choices: []}", "give {low, high"),
        ("[1, 2]", "expected a mapping"),
    ],
)
def test_bad_search_spaces_name_the_file_and_key(tmp_path, text, message):
    path = tmp_path / "space.yaml"
    path.write_text(text + "\n")
    with pytest.raises(InvalidInputError, match=message):
        read_search_space(path)
    with pytest.raises(MissingFileError, match="no search space"):
        read_search_space(tmp_path / "missing.yaml")
