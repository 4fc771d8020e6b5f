"""``python -m dsc.<entry> --help``: the entry point's own choices and keys, one line each, read from
its config file (``conf/<entry>.yaml``): its opening comment (how to call it), the groups its
defaults list names with their options, and its keys with their values and comments."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# Groups every entry point composes that a user rarely chooses: their keys are listed by --cfg job.
_NOT_CHOICES = {"paths", "hydra", "_self_"}
_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w]*):(?P<value>[^#]*?)\s*(?:#\s?(?P<comment>.*))?$")
_CHOICE = re.compile(r"^ +- (?P<group>[\w/]+): (?P<option>[^#\s]+)\s*(?:#\s?(?P<comment>.*))?$")
_WIDTH = 110  # a line of help, at most


@dataclass(frozen=True)
class HelpLine:
    """One key (``trainer.devices``) or group (``rounding``), its value or options, what it does."""

    name: str
    value: str
    meaning: str


def _one_line(text: str) -> str:
    return text if len(text) <= _WIDTH else text[: _WIDTH - 1].rstrip() + "…"


def read_entry_config(path: Path) -> tuple[list[str], list[HelpLine], list[HelpLine]]:
    """(the opening comment's lines, the defaults list's groups, the keys) of an entry's config file.

    A key's meaning is its line's comment, else the comment lines just above it; nested keys
    (``trainer:`` then ``  devices: 1``) are dotted, the ``hydra:`` block is Hydra's and left out.
    """
    lines = path.read_text().splitlines()
    header = []
    for line in lines:
        if not line.startswith("#"):
            break
        header.append(line.lstrip("# ").rstrip())
    groups, keys, above, parents = [], [], [], {}
    section = None
    for line in lines[len(header) :]:
        if line.lstrip().startswith("#"):
            above.append(line.strip().lstrip("#").strip())
            continue
        choice = _CHOICE.match(line)
        if section == "defaults" and choice:
            if choice["group"] not in _NOT_CHOICES and not choice["group"].endswith("_schema"):
                meaning = choice["comment"] or " ".join(above)
                groups.append(HelpLine(choice["group"], choice["option"], meaning))
        elif match := _KEY.match(line):
            depth = len(match["indent"]) // 2
            if depth == 0:
                section = match["key"]
                parents = {}
            parents[depth] = match["key"]
            value = match["value"].strip()
            if section not in ("defaults", "hydra") and value:
                name = ".".join(parents[level] for level in range(depth + 1))
                keys.append(HelpLine(name, value, match["comment"] or " ".join(above)))
        above = []
    return header, groups, keys


def entry_help(config_dir: Path, config_name: str) -> str:
    """The text of ``python -m dsc.<config_name> --help``."""
    header, groups, keys = read_entry_config(config_dir / f"{config_name}.yaml")
    command = f"python -m dsc.{config_name}"
    text = [f"{command} [group=option …] [key=value …]", *(f"  {line}" for line in header if line), ""]
    if groups:
        text.append("Choices (group=option; default in brackets):")
        width = max(len(group.name) for group in groups)
        for group in groups:
            options = sorted(path.stem for path in (config_dir / group.name).glob("*.yaml"))
            text.append(f"  {group.name:<{width}}  [{group.value}] {', '.join(options)}")
            if group.meaning:
                text.append(_one_line(f"  {'':<{width}}  {group.meaning}"))
        text.append("")
    text.append("Keys (key=value; default after =):")
    width = min(32, max(len(f"{key.name}={key.value}") for key in keys))
    for key in keys:
        text.append(_one_line(f"  {key.name + '=' + key.value:<{width}}  {key.meaning}"))
    text += [
        "",
        f"Every key of a composed config, the choices' own included: {command} --cfg job [group=option …]",
        f"Hydra's own flags (multirun, sweepers, launchers): {command} --hydra-help",
    ]
    return "\n".join(text)
