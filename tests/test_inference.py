"""python -m dsc.predict and python -m dsc.evaluate on a checkpoint of a tiny training run."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from hydra_configs import TINY, compose_config
from PIL import Image
from pycocotools.coco import COCO

from dsc.data import Shapes
from dsc.evaluate import evaluate
from dsc.outputs.coco import coco_mask_ap
from dsc.predict import predict
from dsc.train import train
from dsc.training.checkpoint_record import load_model, read_checkpoint


@pytest.fixture
def image_folder(tmp_path):
    folder = tmp_path / "input"
    folder.mkdir()
    shapes = Shapes(num_images=3, seed=9)
    for index in range(3):
        Image.fromarray(shapes.images[index].permute(1, 2, 0).numpy()).save(folder / f"shape_{index}.jpg")
    Image.fromarray(np.zeros((40, 50, 3), dtype=np.uint8)).save(folder / "other_size.png")
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return folder


def test_predict_writes_palette_masks_and_overlays_and_skips_bad_files(
    trained_checkpoint, image_folder, tmp_path
):
    output = tmp_path / "predictions"
    cfg = compose_config(
        "predict",
        tmp_path / "run",
        f"ckpt_path={trained_checkpoint}",
        f"input={image_folder}",
        f"output={output}",
        "batch_size=2",
        "device=cpu",
    )
    assert predict(cfg) | {"dropped": 0, "far": 0} == {"written": 4, "skipped": 2, "dropped": 0, "far": 0}
    for stem, size in [("shape_0", (64, 64)), ("shape_2", (64, 64)), ("other_size", (50, 40))]:
        mask = Image.open(output / f"{stem}.png")
        assert mask.mode == "P" and mask.size == size
        assert mask.getpalette()[3:6] == [128, 0, 0]  # VOC's colour of id 1
        ids = np.asarray(mask)
        assert (np.bincount(ids.flatten())[: ids.max() + 1] > 0).all(), "ids are consecutive from 0"
        factor = -(-256 // size[1])  # upscaled (nearest neighbour) to 256 px high; input | overlay
        width, height = Image.open(output / f"{stem}_overlay.png").size
        assert width == 2 * size[0] * factor + 4 and height > size[1] * factor  # the legend beneath
    assert not (output / "notes.png").exists() and not (output / "broken.png").exists()


def predict_config(tmp_path, checkpoint, source, output, *overrides):
    return compose_config(
        "predict", tmp_path / "run", f"ckpt_path={checkpoint}", f"input={source}", f"output={output}",
        "device=cpu", *overrides,
    )  # fmt: skip


def test_predict_never_overwrites_inputs_and_existing_outputs_only_when_asked(
    trained_checkpoint, image_folder, tmp_path
):
    output = tmp_path / "predictions"
    assert predict(predict_config(tmp_path, trained_checkpoint, image_folder, output))["written"] == 4
    with pytest.raises(FileExistsError, match=r"output file\(s\) exist already .*overwrite=true"):
        predict(predict_config(tmp_path, trained_checkpoint, image_folder, output))
    again = predict_config(tmp_path, trained_checkpoint, image_folder, output, "overwrite=true")
    assert predict(again)["written"] == 4

    # Into the input folder: other_size.png would be replaced by its own mask.
    before = {path.name: path.read_bytes() for path in image_folder.iterdir()}
    for overwrite in ("false", "true"):
        cfg = predict_config(
            tmp_path, trained_checkpoint, image_folder, image_folder, f"overwrite={overwrite}"
        )
        with pytest.raises(FileExistsError, match=r"would overwrite an input"):
            predict(cfg)
    assert {path.name: path.read_bytes() for path in image_folder.iterdir()} == before


def test_predict_reads_photos_upright(trained_checkpoint, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    photo = Image.fromarray(np.full((30, 50, 3), 128, dtype=np.uint8))  # 50 wide, 30 high as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the camera was turned; show rotated by 90°
    photo.save(folder / "turned.jpg", exif=exif)
    predict(predict_config(tmp_path, trained_checkpoint, folder, tmp_path / "out"))
    assert Image.open(tmp_path / "out" / "turned.png").size == (30, 50)


def test_more_than_255_segments_are_written_as_16_bit_ids(tmp_path, caplog):
    from dsc.outputs.png import write_prediction

    labels = torch.arange(20 * 20).view(20, 20)  # 400 segments of one pixel
    write_prediction(torch.zeros(3, 20, 20), labels, tmp_path, "many")
    mask = Image.open(tmp_path / "many.png")
    assert mask.mode.startswith("I")
    ids = np.asarray(mask).astype(np.int64)
    assert sorted(np.unique(ids)) == list(range(400))
    assert "400 segments" in caplog.text and "16-bit" in caplog.text


def test_predict_a_single_image_with_another_rounding(trained_checkpoint, image_folder, tmp_path):
    cfg = compose_config(
        "predict",
        tmp_path / "run",
        f"ckpt_path={trained_checkpoint}",
        f"input={image_folder / 'shape_1.jpg'}",
        f"output={tmp_path / 'out'}",
        "rounding=kwikcluster_refine",
        "device=cpu",
    )
    assert predict(cfg) | {"dropped": 0, "far": 0} == {"written": 1, "skipped": 0, "dropped": 0, "far": 0}


def test_evaluate_scores_the_checkpoint_with_any_rounding(trained_checkpoint, tmp_path):
    scores = {}
    for rounding in ("kwikcluster", "kmeans"):
        cfg = compose_config(
            "evaluate",
            tmp_path / rounding,
            f"ckpt_path={trained_checkpoint}",
            f"rounding={rounding}",
            "trainer.accelerator=cpu",
            "+data.val.num_images=6",
        )
        scores[rounding] = evaluate(cfg)
        written = json.loads((tmp_path / rounding / "metrics.json").read_text())
        assert written["val/pairwise_fg_f1"] == pytest.approx(scores[rounding]["val/pairwise_fg_f1"])
        assert "val/theorem22/ratio" in written


def test_evaluate_reads_only_the_split_it_scores(trained_checkpoint, tmp_path):
    from voc_trees import write_voc_tree

    voc = write_voc_tree(tmp_path / "data", ["a", "b"])
    cfg = compose_config(
        "evaluate",
        tmp_path / "run",
        f"ckpt_path={trained_checkpoint}",
        "data=sbd",  # trains on SBD, which is not there; validates on VOC val
        f"paths.voc_root={voc}",
        f"paths.sbd_root={tmp_path / 'no_sbd_here'}",
        "data.num_workers=0",
        "trainer.accelerator=cpu",
    )
    assert 0.0 <= evaluate(cfg)["val/pairwise_fg_f1"] <= 1.0


def test_checkpoint_with_pickled_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    crafted = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {}, "dsc_config": {}, "payload": Payload()}, crafted)
    with pytest.raises(ValueError, match=r"crafted\.ckpt.*weights_only=True"):
        read_checkpoint(crafted)
    assert not marker.exists()
    # The payload is live: unpickling without weights_only would have run it.
    torch.load(crafted, weights_only=False)
    assert marker.exists()


def test_missing_corrupt_and_foreign_checkpoints_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.ckpt"):
        read_checkpoint(tmp_path / "nope.ckpt")
    (tmp_path / "corrupt.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"corrupt\.ckpt"):
        read_checkpoint(tmp_path / "corrupt.ckpt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.ckpt")
    with pytest.raises(ValueError, match=r"foreign\.ckpt is not a dsc checkpoint"):
        read_checkpoint(tmp_path / "foreign.ckpt")


def test_loaded_model_reproduces_the_trained_weights(trained_checkpoint):
    model, record = load_model(trained_checkpoint)
    state = torch.load(trained_checkpoint, weights_only=True)["state_dict"]
    assert all(torch.equal(value, state[name]) for name, value in model.state_dict().items())
    assert record.config["model"]["embed_dim"] == 16 and not model.training


def test_predict_command_line(trained_checkpoint, image_folder, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dsc.predict",
            f"ckpt_path={trained_checkpoint}",
            f"input={image_folder}",
            f"output={tmp_path / 'cli'}",
            "hydra.run.dir=" + str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    # Every readable image predicted, two files skipped: the exit code says so (3).
    assert result.returncode == 3, result.stderr[-2000:]
    assert "skipping" in result.stderr + result.stdout and "notes.txt" in result.stderr + result.stdout
    assert "2 input(s) skipped" in result.stderr + result.stdout
    assert len(list((tmp_path / "cli").glob("*_overlay.png"))) == 4


def test_evaluate_composes_with_an_experiment(tmp_path):
    cfg = compose_config(
        "evaluate", tmp_path, "experiment=voc_fcn8_spectral", "ckpt_path=run.ckpt", "split=train"
    )
    assert cfg.data.train._target_ == "dsc.data.SBDInstances" and cfg.rounding.scheme.threshold == 0.5
    assert cfg.trainer.precision == "bf16-mixed"


@pytest.mark.parametrize("model", ["spectral", "joint"])
def test_evaluate_exports_coco_files_of_the_scored_split(model, trained_checkpoint, tmp_path):
    checkpoint = trained_checkpoint
    if model == "joint":  # a class head: per-class categories named after the data set's classes
        train(
            compose_config("train", tmp_path / "joint", *TINY, "loss=spectral_joint", "model.num_classes=4")
        )
        checkpoint = tmp_path / "joint" / "checkpoints" / "last.ckpt"
    output = tmp_path / "evaluate"
    overrides = [
        f"ckpt_path={checkpoint}",
        "export=coco",
        "trainer.accelerator=cpu",
        "+data.val.num_images=6",
    ]
    metrics = evaluate(compose_config("evaluate", output, *overrides))
    ground_truth = COCO(str(output / "ground_truth_coco.json"))
    assert sorted(ground_truth.getImgIds()) == [1, 2, 3, 4, 5, 6]
    names = {category["name"] for category in ground_truth.dataset["categories"]}
    assert names == ({"disk", "square", "triangle"} if model == "joint" else {"object"})
    assert ground_truth.getAnnIds() and all(a["iscrowd"] == 0 for a in ground_truth.dataset["annotations"])
    predictions = json.loads((output / "predictions_coco.json").read_text())
    key = "val/mask_ap" if model == "joint" else "val/agnostic/mask_ap"
    if predictions:
        assert coco_mask_ap(output) == pytest.approx(metrics[key], abs=0.005)
    else:  # a briefly trained model may find no object: an empty, valid results file
        assert metrics[key] == -1.0


def test_unknown_export_format_is_named(trained_checkpoint, tmp_path):
    cfg = compose_config("evaluate", tmp_path, f"ckpt_path={trained_checkpoint}", "export=lvis")
    with pytest.raises(ValueError, match="export=lvis is not a format dsc writes: use coco or null"):
        evaluate(cfg)


def test_evaluate_and_predict_never_write_into_a_training_run(trained_checkpoint, image_folder, tmp_path):
    from dsc.contracts import OutputExistsError

    run_dir = trained_checkpoint.parent.parent
    files = sorted(path for path in run_dir.rglob("*") if path.is_file())
    kept = {path: path.read_bytes() for path in files if path.suffix == ".json"}
    with pytest.raises(OutputExistsError, match=r"hydra\.run\.dir=.* holds a training run \(checkpoints"):
        evaluate(compose_config("evaluate", run_dir, f"ckpt_path={trained_checkpoint}"))
    for key, folder in (("hydra.run.dir", run_dir), ("output", tmp_path / "predict")):
        cfg = compose_config("predict", folder if key == "hydra.run.dir" else tmp_path / "predict",
                             f"ckpt_path={trained_checkpoint}", f"input={image_folder}",
                             f"output={run_dir if key == 'output' else tmp_path / 'out'}")  # fmt: skip
        with pytest.raises(OutputExistsError, match=rf"{key}=.* holds a training run"):
            predict(cfg)
    assert sorted(path for path in run_dir.rglob("*") if path.is_file()) == files
    assert kept == {path: path.read_bytes() for path in kept}


def test_oversized_images_and_decompression_bombs_are_skipped_and_the_rest_predicted(
    trained_checkpoint, tmp_path
):
    import zlib

    folder = tmp_path / "input"
    folder.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(folder / "small.png")
    Image.fromarray(np.zeros((64, 80, 3), dtype=np.uint8)).save(folder / "large.png")
    # A 48-byte PNG header claiming 20000 × 20000 pixels: PIL's decompression-bomb check refuses it.
    header = b"\x89PNG\r\n\x1a\n"
    ihdr = b"IHDR" + (20000).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    chunk = len(ihdr[4:]).to_bytes(4, "big") + ihdr + zlib.crc32(ihdr).to_bytes(4, "big")
    (folder / "bomb.png").write_bytes(header + chunk)
    cfg = compose_config(
        "predict", tmp_path / "run", f"ckpt_path={trained_checkpoint}", f"input={folder}",
        f"output={tmp_path / 'out'}", "max_pixels=4000", "device=cpu",
    )  # fmt: skip
    assert predict(cfg) | {"dropped": 0, "far": 0} == {"written": 1, "skipped": 2, "dropped": 0, "far": 0}
    assert (tmp_path / "out" / "small.png").exists() and not (tmp_path / "out" / "large.png").exists()
