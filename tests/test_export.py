"""python -m dsc.export: the ONNX file computes what torch computes, at any size, and dsc.predict
runs it in onnxruntime with the run's rounding."""

import json
import subprocess
import sys

import numpy as np
import onnxruntime
import pytest
import torch
from hydra_configs import SHALLOW_SMP, TINY, compose_config
from PIL import Image
from torch import nn

from dsc.deploy import OnnxNetwork, export_onnx
from dsc.export import export
from dsc.predict import predict
from dsc.training.checkpoint_record import load_model
from dsc.training.module import DeepSpectralClustering

TOLERANCE = 1e-5  # largest absolute difference between onnxruntime's and torch's outputs (float32)


def export_config(tmp_path, checkpoint, output, *overrides):
    return compose_config(
        "export", tmp_path / "run", f"ckpt_path={checkpoint}", f"output={output}", *overrides
    )


@pytest.mark.parametrize("heads", ["embedding", "embedding+classes"])
def test_onnxruntime_computes_what_torch_computes_at_two_sizes(
    heads, trained_checkpoint, joint_checkpoint, tmp_path
):
    checkpoint = trained_checkpoint if heads == "embedding" else joint_checkpoint
    path = export(export_config(tmp_path, checkpoint, tmp_path / "model.onnx"))
    model, _ = load_model(checkpoint)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    assert names == (["embeddings"] if heads == "embedding" else ["embeddings", "class_logits"])
    generator = torch.Generator().manual_seed(0)
    for shape in [(1, 3, 64, 64), (3, 3, 45, 77)]:
        images = torch.rand(*shape, generator=generator)
        with torch.no_grad():
            outputs = model(images)
        expected = [outputs.embeddings] + ([outputs.class_logits] if heads != "embedding" else [])
        results = session.run(None, {"images": images.numpy()})
        for name, result, reference in zip(names, results, expected, strict=True):
            assert result.shape == tuple(reference.shape), name
            assert np.abs(result - reference.numpy()).max() < TOLERANCE, name
    assert np.allclose(np.linalg.norm(results[0], axis=1), 1, atol=1e-5), "embeddings are unit vectors"


def test_predict_with_the_onnx_file_writes_the_masks_torch_writes(trained_checkpoint, tmp_path):
    path = export(export_config(tmp_path, trained_checkpoint, tmp_path / "model.onnx"))
    folder = tmp_path / "input"
    folder.mkdir()
    generator = torch.Generator().manual_seed(1)
    for index, size in enumerate([(64, 64), (48, 80)]):
        image = (torch.rand(size[0], size[1], 3, generator=generator) * 255).byte().numpy()
        Image.fromarray(image).save(folder / f"image_{index}.png")
    common = [f"input={folder}", "device=cpu", "rounding=kwikcluster", "rounding.scheme.threshold=0.9"]
    by_torch = compose_config("predict", tmp_path / "r1", f"ckpt_path={trained_checkpoint}",
                              f"output={tmp_path / 'torch'}", *common)  # fmt: skip
    by_onnx = compose_config(
        "predict", tmp_path / "r2", f"onnx={path}", f"output={tmp_path / 'onnx'}", *common
    )
    assert predict(by_torch)["written"] == predict(by_onnx)["written"] == 2
    for index in range(2):
        torch_mask = np.asarray(Image.open(tmp_path / "torch" / f"image_{index}.png"))
        onnx_mask = np.asarray(Image.open(tmp_path / "onnx" / f"image_{index}.png"))
        assert (torch_mask == onnx_mask).mean() > 0.999  # a pixel at the threshold may round either way


def test_the_rounding_comes_from_the_run_or_the_command_line(trained_checkpoint, tmp_path):
    path = export(export_config(tmp_path, trained_checkpoint, tmp_path / "model.onnx"))
    network = OnnxNetwork(path)
    assert type(network.rounding).__name__ == "Rounding" and network.heads == {"embedding"}
    assert network.record.config["model"]["embed_dim"] == 16
    kmeans = compose_config("predict", tmp_path, "onnx=x", "input=x", "rounding=kmeans").rounding
    assert "kmeans" in str(OnnxNetwork(path, kmeans).rounding.scheme)


class ThresholdedNet(nn.Module):
    """A network with Python control flow on pixel values, which no trace can capture."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 4, 1)
        self.gate = Gate()

    def forward(self, images):
        return self.gate(self.features(images))


class Gate(nn.Module):
    def forward(self, x):
        return x if float(x.mean()) > 0 else -x


def test_a_network_that_cannot_be_exported_names_the_layer(tmp_path):
    from dsc.losses import SpectralLoss
    from dsc.rounding import Rounding, kwikcluster

    model = DeepSpectralClustering(
        ThresholdedNet(), SpectralLoss(), Rounding(kwikcluster), torch.optim.SGD, embed_dim=4
    )
    with pytest.raises(ValueError, match=r"to ONNX: layer backbone.gate \(Gate\) failed: .*data-dependent"):
        export_onnx(model, tmp_path / "model.onnx")


def test_export_refuses_to_replace_a_file_and_predict_needs_one_network(trained_checkpoint, tmp_path):
    existing = tmp_path / "model.onnx"
    existing.write_text("mine")
    with pytest.raises(FileExistsError, match=r"model.onnx exists already: pass overwrite=true"):
        export(export_config(tmp_path, trained_checkpoint, existing))
    assert existing.read_text() == "mine"
    for networks in ([f"ckpt_path={trained_checkpoint}", f"onnx={existing}"], []):
        cfg = compose_config("predict", tmp_path, f"input={existing}", *networks)
        with pytest.raises(ValueError, match=r"pass either ckpt_path=.* or onnx=.*not (both|neither)"):
            predict(cfg)
    with pytest.raises(ValueError, match=r"was not written by python -m dsc.export|cannot load"):
        OnnxNetwork(existing)


def test_export_command_line(trained_checkpoint, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "dsc.export", f"ckpt_path={trained_checkpoint}",
         f"output={tmp_path / 'cli.onnx'}", f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "cli.onnx").stat().st_size > 100_000 and not (tmp_path / "cli.onnx.data").exists()


def test_a_write_that_fails_midway_keeps_the_old_file_and_names_the_cause(trained_checkpoint, tmp_path):
    """A file-size limit below the model's size: the write itself fails, as on a full disk or quota."""
    import os
    import resource
    import signal

    existing = export(export_config(tmp_path, trained_checkpoint, tmp_path / "model.onnx"))
    before = existing.read_bytes()

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) // 2, len(before) // 2))

    result = subprocess.run(
        [sys.executable, "-m", "dsc.export", f"ckpt_path={trained_checkpoint}", f"output={existing}",
         "overwrite=true", f"hydra.run.dir={tmp_path / 'again'}"],
        capture_output=True, text=True, timeout=300, preexec_fn=limit_file_size,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )  # fmt: skip
    assert result.returncode == 2
    assert f"error: cannot write {existing}: File too large" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "cannot export this network" not in result.stderr
    assert existing.read_bytes() == before
    assert sorted(path.name for path in tmp_path.iterdir() if path.is_file()) == ["model.onnx"]


def test_export_never_writes_onto_the_checkpoint_it_reads(trained_checkpoint, tmp_path):
    import os

    from dsc.contracts import OutputExistsError

    copy = tmp_path / "model.ckpt"
    copy.write_bytes(trained_checkpoint.read_bytes())
    (tmp_path / "symbolic.onnx").symlink_to(copy)
    os.link(copy, tmp_path / "hard.onnx")
    for output in (copy, tmp_path / "symbolic.onnx", tmp_path / "hard.onnx"):
        with pytest.raises(OutputExistsError, match=rf"output=.*{output.name} (is|links to) .*model\.ckpt"):
            export(export_config(tmp_path, copy, output, "overwrite=true"))
    assert copy.read_bytes() == trained_checkpoint.read_bytes()


def test_a_folder_as_output_and_non_finite_weights_are_refused(trained_checkpoint, tmp_path):
    from dsc.contracts import InvalidInputError

    with pytest.raises(
        InvalidInputError, match=r"is a folder: name the file to write, e\.g\. output=.*model\.onnx"
    ):
        export(export_config(tmp_path, trained_checkpoint, tmp_path))
    checkpoint = torch.load(trained_checkpoint, weights_only=True)
    weight = next(name for name, tensor in checkpoint["state_dict"].items() if tensor.is_floating_point())
    checkpoint["state_dict"][weight] = torch.full_like(checkpoint["state_dict"][weight], float("nan"))
    torch.save(checkpoint, tmp_path / "diverged.ckpt")
    with pytest.raises(InvalidInputError, match=rf"non-finite weights \({weight}"):
        export(export_config(tmp_path, tmp_path / "diverged.ckpt", tmp_path / "nan.onnx"))
    assert not (tmp_path / "nan.onnx").exists()


def test_a_model_rounded_on_its_raw_embedding_exports_it_raw_and_predicts_as_torch(tmp_path):
    from hydra_configs import TINY

    from dsc.train import train

    run = tmp_path / "discriminative"
    train(compose_config("train", run, *TINY, "experiment=shapes_discriminative"))
    checkpoint = run / "checkpoints" / "last.ckpt"
    path = export(export_config(tmp_path, checkpoint, tmp_path / "model.onnx"))
    model, _ = load_model(checkpoint)
    images = torch.rand(2, 3, 40, 56, generator=torch.Generator().manual_seed(0))
    network = OnnxNetwork(path)
    with torch.no_grad():
        expected = model(images)
    outputs = network(images)
    assert (outputs.raw_embeddings - expected.raw_embeddings).abs().max() < TOLERANCE
    assert not torch.allclose(outputs.raw_embeddings.norm(dim=1), torch.ones(1))  # raw, not unit
    generator = torch.Generator().manual_seed(3)
    by_torch = model.partition(expected, generator=generator)
    by_onnx = network.partition(outputs, generator=torch.Generator().manual_seed(3))
    assert (by_torch == by_onnx).float().mean() > 0.999


@pytest.mark.slow
def test_an_smp_network_exports_and_computes_what_torch_computes(tmp_path):
    from dsc.train import train

    run = tmp_path / "smp"
    smp_fpn = ["backbone=smp", "backbone.arch=FPN", "backbone.encoder_name=tu-resnet18", *SHALLOW_SMP["FPN"]]
    train(compose_config("train", run, *TINY, *smp_fpn, "data.train.num_images=8", "data.val.num_images=3"))
    checkpoint = run / "checkpoints" / "last.ckpt"
    path = export(export_config(tmp_path, checkpoint, tmp_path / "smp.onnx"))
    model, _ = load_model(checkpoint)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in [(1, 3, 64, 64), (2, 3, 45, 77)]:  # 45 × 77: padded to 64 × 96 inside, cropped back
        images = torch.rand(*shape, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            expected = model(images).embeddings
        (result,) = session.run(None, {"images": images.numpy()})
        assert result.shape == tuple(expected.shape)
        assert np.abs(result - expected.numpy()).max() < TOLERANCE


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda config: "[" * 100_000 + "]" * 100_000, r"metadata dsc_config is not JSON of a record"),
        (
            lambda config: json.dumps({k: v for k, v in config.items() if k != "model"}),
            r"has no model\.embed",
        ),
        (
            lambda config: json.dumps({**config, "model": {**config["model"], "embed_dim": 5}}),
            r"output embeddings has shape \[.*, 16, .*metadata give \(B, 5, H, W\)",
        ),
        (
            lambda config: json.dumps({**config, "model": {**config["model"], "num_classes": 3}}),
            r"no output class_logits",
        ),
    ],
    ids=["nested past the stack", "no model", "another d", "a head the graph lacks"],
)
def test_an_onnx_file_whose_metadata_do_not_fit_is_named(trained_checkpoint, tmp_path, edit, message):
    import onnx

    from dsc.contracts import InvalidInputError

    path = export(export_config(tmp_path, trained_checkpoint, tmp_path / "model.onnx"))
    model = onnx.load(str(path))
    (entry,) = [prop for prop in model.metadata_props if prop.key == "dsc_config"]
    entry.value = edit(json.loads(entry.value))
    onnx.save(model, str(path))
    with pytest.raises(InvalidInputError, match=rf"model\.onnx: .*{message}"):
        OnnxNetwork(path)
