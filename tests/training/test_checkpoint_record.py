"""The checkpoint record: saved configs are data. A crafted checkpoint or ONNX file whose config names
a function Hydra's blocklist lets through (``builtins.open``, which creates a file) is refused by every
entry point before anything is built, naming the file and the key."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra_configs import compose_config

from dsc.contracts import InvalidInputError
from dsc.training.checkpoint_record import (
    DSC_TARGETS,
    check_trusted,
    is_trusted_target,
    load_model,
    untrusted_entries,
)

CONF = Path(__file__).parents[2] / "dsc" / "conf"


def payload(marker: Path) -> dict:
    """What a hostile config puts where dsc builds an object: a call that creates ``marker``."""
    return {"_target_": "builtins.open", "_args_": [str(marker), "w"]}


def crafted(trained_checkpoint: Path, folder: Path, *keys: str) -> tuple[Path, Path]:
    """A copy of the trained checkpoint with the payload at each dotted key of its saved config;
    returns the file and the marker the payload would create."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / "marker"
    checkpoint = torch.load(trained_checkpoint, weights_only=True)
    for key in keys:
        *parents, last = key.split(".")
        node = checkpoint["dsc_config"]
        for name in parents:
            node = node[name]
        node[last] = payload(marker)
    path = folder / "crafted.ckpt"
    torch.save(checkpoint, path)
    return path, marker


def test_every_target_of_the_shipped_configs_is_trusted():
    targets = set()
    for config in CONF.rglob("*.yaml"):
        targets |= {line.split(":", 1)[1].split("#")[0].strip() for line in config.read_text().splitlines()
                    if line.strip().startswith("_target_:")}  # fmt: skip
    targets.discard("???")  # backbone=custom: the user's own class, trusted by trusted_targets=[…]
    assert targets and all(is_trusted_target(target) for target in targets), sorted(
        target for target in targets if not is_trusted_target(target)
    )
    assert all(is_trusted_target(target) for target in DSC_TARGETS)


def test_only_named_kinds_and_the_commands_targets_are_trusted():
    assert is_trusted_target("torch.optim.AdamW") and is_trusted_target("torch.optim.lr_scheduler.StepLR")
    refused = [
        "builtins.open",
        "os.system",
        "subprocess.run",
        "torch.optim.Optimizer.zero_grad",  # a method, not a class of the kind
        "torch.optim.lr_scheduler.warnings",  # a module the scheduler module imports
        "dsc.ops.c_kernels.subprocess.run",
        "pytorch_lightning.loggers.os.system",
    ]
    for target in refused:
        assert not is_trusted_target(target), target
    assert is_trusted_target("my.module.Net", frozenset({"my.module.Net"}))
    config = {"model": {"backbone": {"_target_": "my.module.Net"}, "loss": "${oc.env:HOME}"}}
    assert untrusted_entries(config) == ["model.backbone._target_=my.module.Net", "model.loss=${oc.env:HOME}"]
    with pytest.raises(
        InvalidInputError, match=r"f\.ckpt names .*my\.module\.Net.*trusted_targets=\[my\.module\.Net\]"
    ):
        check_trusted(config, "f.ckpt")
    check_trusted({"model": {"backbone": {"_target_": "my.module.Net"}}}, "f.ckpt", ["my.module.Net"])


@pytest.mark.parametrize("key", ["model.backbone", "model.rounding.scheme", "model.optimizer", "data.val"])
def test_load_model_refuses_a_saved_config_that_names_code(trained_checkpoint, tmp_path, key):
    path, marker = crafted(trained_checkpoint, tmp_path, key)
    escaped = key.replace(".", r"\.")
    with pytest.raises(InvalidInputError, match=rf"crafted\.ckpt names .*{escaped}\._target_=builtins\.open"):
        load_model(path)
    assert not marker.exists()


def test_predict_evaluate_and_export_refuse_it(trained_checkpoint, tmp_path, image_folder):
    from dsc.evaluate import evaluate
    from dsc.export import export
    from dsc.predict import predict

    path, marker = crafted(trained_checkpoint, tmp_path, "model.backbone", "data.val")
    out, onnx_file = tmp_path / "out", tmp_path / "m.onnx"
    commands = [
        (predict, compose_config("predict", tmp_path / "p", f"ckpt_path={path}", f"input={image_folder}",
                                 f"output={out}", "device=cpu")),
        (evaluate, compose_config("evaluate", tmp_path / "e", f"ckpt_path={path}")),
        (export, compose_config("export", tmp_path / "x", f"ckpt_path={path}", f"output={onnx_file}")),
    ]  # fmt: skip
    for command, cfg in commands:
        with pytest.raises(InvalidInputError, match=r"crafted\.ckpt names what dsc does not build"):
            command(cfg)
        assert not marker.exists(), command.__module__
    assert not onnx_file.exists()


def test_the_command_line_says_so_in_one_line_with_exit_code_2(trained_checkpoint, tmp_path, image_folder):
    path, marker = crafted(trained_checkpoint, tmp_path, "model.backbone")
    result = subprocess.run(
        [sys.executable, "-m", "dsc.predict", f"ckpt_path={path}", f"input={image_folder}",
         f"output={tmp_path / 'out'}", f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert "model.backbone._target_=builtins.open" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr and not marker.exists()


def test_an_onnx_file_whose_metadata_names_code_is_refused(trained_checkpoint, tmp_path):
    pytest.importorskip("onnxruntime")
    import json

    import onnx

    from dsc.deploy import OnnxNetwork, export_onnx

    model, record = load_model(trained_checkpoint)
    path = tmp_path / "model.onnx"
    export_onnx(model, path, record)
    exported = onnx.load(str(path))
    marker = tmp_path / "marker"
    for entry in exported.metadata_props:
        if entry.key == "dsc_config":
            config = json.loads(entry.value)
            config["rounding"]["scheme"] = payload(marker)
            entry.value = json.dumps(config)
    onnx.save(exported, str(path))
    with pytest.raises(
        InvalidInputError, match=r"model\.onnx names .*rounding\.scheme\._target_=builtins\.open"
    ):
        OnnxNetwork(path)
    assert not marker.exists()


def test_resume_refuses_recorded_overrides_and_configs_that_name_code(make_config, tmp_path):
    from dsc.train import train

    train(make_config("callbacks.last_checkpoint.every_n_train_steps=1"))
    last = tmp_path / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    marker = tmp_path / "marker"

    added = ["+callbacks.x._target_=builtins.open", f"+callbacks.x._args_=[{marker},w]"]
    hostile = dict(checkpoint, dsc_overrides=[*checkpoint["dsc_overrides"], *added])
    torch.save(hostile, last)
    with pytest.raises(
        InvalidInputError,
        match=r"last\.ckpt records the override '\+callbacks\.x\._target_=builtins\.open', which adds",
    ):
        train(make_config("ckpt_path=last"))
    assert not marker.exists()

    hostile = dict(checkpoint)
    hostile["dsc_config"] = dict(checkpoint["dsc_config"], trainer=payload(marker))
    torch.save(hostile, last)
    with pytest.raises(InvalidInputError, match=r"last\.ckpt names .*trainer\._target_=builtins\.open"):
        train(make_config("ckpt_path=last"))
    assert not marker.exists()


@pytest.fixture
def image_folder(tmp_path):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("RGB", (32, 32), (40, 80, 120)).save(folder / "a.png")
    return folder


def test_a_record_that_is_not_plain_data_is_refused(trained_checkpoint, tmp_path):
    checkpoint = torch.load(trained_checkpoint, weights_only=True)
    checkpoint["dsc_class_names"] = [1, 2]
    torch.save(checkpoint, tmp_path / "odd.ckpt")
    with pytest.raises(InvalidInputError, match=r"odd\.ckpt: dsc_class_names is not what dsc records"):
        load_model(tmp_path / "odd.ckpt")


def test_a_file_that_is_no_dict_or_names_classes_by_a_string_is_refused(trained_checkpoint, tmp_path):
    from dsc.training.checkpoint_record import NotADscCheckpoint, read_checkpoint

    torch.save(torch.zeros(3), tmp_path / "tensor.ckpt")
    with pytest.raises(NotADscCheckpoint, match=r"tensor\.ckpt is not a dsc checkpoint \(it lacks a dict\)"):
        read_checkpoint(tmp_path / "tensor.ckpt")
    checkpoint = torch.load(trained_checkpoint, weights_only=True)
    checkpoint["dsc_class_names"] = "background"
    torch.save(checkpoint, tmp_path / "string.ckpt")
    with pytest.raises(InvalidInputError, match=r"string\.ckpt: dsc_class_names is not what dsc records"):
        load_model(tmp_path / "string.ckpt")


def test_the_projection_is_fitted_on_the_validation_pixels_that_are_not_void():
    from types import SimpleNamespace

    import torch

    from dsc.ops.projection import EmbeddingProjection
    from dsc.training.checkpoint_record import PROJECTION_SPREAD, CheckpointRecord

    record = CheckpointRecord({}, [], None)
    trainer = SimpleNamespace(sanity_checking=False, state=SimpleNamespace(fn="fit"), num_val_batches=[2])
    generator = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(2):
        features = torch.randn(2, 4, 5, 6, generator=generator)
        truth = torch.randint(0, 3, (2, 5, 6), generator=generator)
        truth[:, 0] = 255  # void rows
        batches.append((features, truth))
        record.on_validation_batch_end(trainer, None, {"embeddings": features}, {"instances": truth}, 0)
    record.on_validation_epoch_end(trainer, None)
    rows = torch.cat([features.permute(0, 2, 3, 1)[truth != 255] for features, truth in batches])
    expected = EmbeddingProjection.fit(rows, PROJECTION_SPREAD)
    for name in ("mean", "axes", "low", "high"):
        assert torch.allclose(getattr(record.projection, name), getattr(expected, name), atol=1e-5), name


@pytest.mark.parametrize(
    "recorded, why",
    [
        (["seed='${oc.create:{_target_:builtins.open,_args_:[MARKER,w]}}'"], "interpolation"),
        (["hydra.searchpath=[file://FOLDER]", "backbone=evil"], "only the command sets"),
        (["paths.output_dir=FOLDER"], "only the command sets"),
    ],
    ids=["a resolver in a recorded value", "the search path from the file", "writes moved elsewhere"],
)
def test_a_resumed_run_composes_nothing_a_file_names(make_config, tmp_path, recorded, why):
    """A stranger's checkpoint resumed: nothing it records is composed, resolved or run."""
    from dsc.train import train

    train(make_config("callbacks.last_checkpoint.every_n_train_steps=1"))
    last = tmp_path / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    marker, folder = tmp_path / "marker", tmp_path / "sender"
    (folder / "backbone").mkdir(parents=True)
    (folder / "backbone" / "evil.yaml").write_text(f"_target_: builtins.open\n_args_: [{marker}, w]\n")
    lines = [line.replace("MARKER", str(marker)).replace("FOLDER", str(folder)) for line in recorded]
    torch.save(dict(checkpoint, dsc_overrides=[*checkpoint["dsc_overrides"], *lines]), last)
    with pytest.raises(InvalidInputError, match=rf"last\.ckpt records the override .*{why}"):
        train(make_config("ckpt_path=last"))
    assert not marker.exists()
