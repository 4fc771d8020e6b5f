"""A command line's overrides checked before Hydra runs: a key the config does not have is named
with the closest keys it does have, instead of Hydra's advice to add it with ``+``."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig

from dsc.contracts import InvalidInputError

# Hydra's own flags: with them Hydra answers something else than a run (help, a printed config, …),
# or composes another config; the check leaves those command lines to Hydra.
HYDRA_FLAGS = ("-h", "--help", "--hydra-help", "-c", "--cfg", "-i", "--info", "--shell-completion", "-sc",
               "-cn", "--config-name", "-cp", "--config-path", "-cd", "--config-dir", "-p", "--package",
               "--resolve", "--version")  # fmt: skip


class UnknownKeyError(InvalidInputError):
    """An override names a key the composed config does not have."""


def _keys(node: Any, prefix: str = "") -> list[str]:
    """Every dotted key of a config, its sub-configs' keys included (values are not resolved)."""
    if not isinstance(node, DictConfig):
        return []
    found = []
    for name in node:
        key = f"{prefix}{name}"
        found.append(key)
        found += _keys(node._get_node(name), f"{key}.")
    return found


def _first_value(override: Override) -> str:
    """The override as a plain ``key=value``: a sweep's first value."""
    if override.is_sweep_override():
        return f"{override.key_or_group}={next(iter(override.sweep_string_iterator()))}"
    return override.input_line


def unknown_keys(config_dir: Path, config_name: str, arguments: Sequence[str]) -> list[tuple[str, list[str]]]:
    """The value overrides among ``arguments`` whose key the config lacks, each with up to three
    close keys (``_composed``)."""
    return _composed(config_dir, config_name, arguments)[0]


def _composed(
    config_dir: Path, config_name: str, arguments: Sequence[str]
) -> tuple[list[tuple[str, list[str]]], Exception | None]:
    """The value overrides among ``arguments`` whose key the config composed from ``config_name``
    (with the command's group choices) lacks, each with up to three close keys; [] when the
    command line holds a Hydra flag, no value override, or composes as it is. Second: Hydra's
    refusal when every key is known (a value of the wrong type), else None."""
    if any(argument.split("=")[0] in HYDRA_FLAGS for argument in arguments):
        return [], None
    overrides = [
        override
        for override in OverridesParser.create().parse_overrides(
            [a for a in arguments if not a.startswith("-")]
        )
        if not override.key_or_group.startswith("hydra")
    ]

    def is_group(override: Override) -> bool:
        return (config_dir / override.key_or_group.replace(".", "/")).is_dir()

    groups = [_first_value(override) for override in overrides if is_group(override)]
    values = [override for override in overrides if not is_group(override)]
    if not values:  # only group choices: nothing to check, and no composition added to start-up
        return [], None
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            try:
                compose(config_name, overrides=groups + [_first_value(override) for override in values])
                return [], None
            except Exception as error:  # whatever Hydra refuses: see whether a key is unknown
                refused = error
                cfg = compose(config_name, overrides=groups)
    except Exception:  # the group choices themselves fail: Hydra names them
        return [], None
    finally:
        GlobalHydra.instance().clear()
    known = _keys(cfg)
    missing = []
    for override in values:
        key = override.key_or_group
        if override.is_add() or override.is_force_add() or key in known:
            continue
        missing.append((key, difflib.get_close_matches(key, known, n=3, cutoff=0.6)))
    return missing, None if missing else refused


class CompositionError(InvalidInputError):
    """An override Hydra would refuse: it does not parse, chooses an option a group lacks, or gives
    a value of the wrong type."""


def _reason(error: BaseException) -> str:
    """The first line of the innermost message of Hydra's error chain: its actual reason."""
    while error.__cause__ is not None:
        error = error.__cause__
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def check_choices(config_dir: Path, arguments: Sequence[str]) -> None:
    """Raise ``CompositionError`` for the first override that does not parse, or that chooses an
    option a group of ``config_dir`` lacks (listing the group's options)."""
    lines = [a for a in arguments if not a.startswith("-")]
    try:
        overrides = OverridesParser.create().parse_overrides(lines)
    except Exception as error:
        raise CompositionError(f"{_reason(error)}: check the override's quoting and brackets") from None
    multirun = any(a in ("-m", "--multirun") for a in arguments) or any(
        o.key_or_group in ("hparams_search", "hydra.mode") for o in overrides
    )  # hparams_search=… and hydra.mode=MULTIRUN sweep without -m
    sweep = next((o for o in overrides if o.is_sweep_override()), None)
    if sweep is not None and not multirun:
        raise CompositionError(
            f"{sweep.input_line}: several values sweep, which needs -m (python -m dsc.<command> -m "
            f"{sweep.input_line} …); for one value give one"
        )
    if any(o.key_or_group == "hydra.searchpath" for o in overrides):
        return  # another search path: its groups are Hydra's to check
    for override in overrides:
        group = config_dir / override.key_or_group
        if override.key_or_group.startswith("hydra") or not group.is_dir() or override.is_delete():
            continue
        values = (
            list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.value()]
        )
        options = sorted(path.stem for path in group.glob("*.yaml"))
        for value in values:
            if value is not None and value != "null" and (not isinstance(value, str) or value not in options):
                raise CompositionError(
                    f"{override.key_or_group}={value}: no such choice; the options are {', '.join(options)}"
                )


def check_overrides(config_dir: Path, config_name: str, arguments: Sequence[str], command: str) -> None:
    """Raise ``CompositionError`` for an override Hydra would refuse (``check_choices``, a value of
    the wrong type) and ``UnknownKeyError`` naming the first override of an unknown key and the
    closest known ones."""
    if any(argument.split("=")[0] in HYDRA_FLAGS for argument in arguments):
        return
    check_choices(config_dir, arguments)
    missing, refused = _composed(config_dir, config_name, arguments)
    if refused is not None:  # every key is known: a value Hydra refuses (a wrong type)
        raise CompositionError(f"{_reason(refused)} ({str(refused).strip().splitlines()[0]})")
    if not missing:
        return
    key, close = missing[0]
    suggestion = f"did you mean {' or '.join(close)}? " if close else ""
    raise UnknownKeyError(
        f"{key}: {command}'s config has no such key; {suggestion}"
        f"(`{command} --cfg job` prints every key; +{key}=… adds a key the config lacks)"
    )
