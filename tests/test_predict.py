"""dsc.predict's result files: COCO (read back by pycocotools) and Cityscapes (scored by
cityscapesscripts), ids, empty images and bad requests."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cityscapes_trees import cityscapes_instance_ap, write_cityscapes_tree
from hydra_configs import compose_config
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from pycocotools.mask import area as mask_area

from dsc.data import Shapes
from dsc.outputs.coco import encode_mask
from dsc.outputs.pictures import TITLE_HEIGHT
from dsc.predict import predict

CATEGORY_IDS = [3, 8, 13, 18, 23, 28, 33, 90]  # a COCO file's own ids, not dsc's classes 1..8


def predict_config(tmp_path, checkpoint, source, output, *overrides):
    return compose_config(
        "predict", tmp_path / "run", f"ckpt_path={checkpoint}", f"input={source}", f"output={output}",
        "device=cpu", *overrides,
    )  # fmt: skip


def write_coco_tree(root, image_ids=(42, 7)):
    """val2017/ with shapes images and annotations/instances_val2017.json describing them with
    CATEGORY_IDS (class c → CATEGORY_IDS[c − 1])."""
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    shapes = Shapes(num_images=len(image_ids), seed=4)
    images, annotations = [], []
    for index, image_id in enumerate(image_ids):
        name = f"{image_id:012d}.png"
        Image.fromarray(shapes.images[index].permute(1, 2, 0).numpy()).save(root / "val2017" / name)
        images.append({"id": image_id, "file_name": name, "height": 64, "width": 64})
        item = shapes[index]
        for instance in item["instances"].unique().tolist():
            if instance in (0, 255):
                continue
            mask = item["instances"] == instance
            klass = int(item["classes"][mask][0])
            rle, box = encode_mask(mask)
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": CATEGORY_IDS[klass - 1],
                "segmentation": rle, "area": int(mask.sum()), "bbox": box, "iscrowd": 0,
            })  # fmt: skip
    categories = [{"id": c, "name": f"thing {c}"} for c in CATEGORY_IDS]
    annotation_file = root / "annotations" / "instances_val2017.json"
    annotation_file.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    return annotation_file


def test_coco_results_number_images_in_order_and_pycocotools_reads_them(trained_checkpoint, tmp_path):
    folder = tmp_path / "input"
    folder.mkdir()
    shapes = Shapes(num_images=2, seed=9)
    for index in range(2):
        Image.fromarray(shapes.images[index].permute(1, 2, 0).numpy()).save(folder / f"b{index}.png")
    Image.fromarray(np.zeros((40, 50, 3), dtype=np.uint8)).save(folder / "a_black.png")  # no instances
    output = tmp_path / "out"
    # A high threshold: the briefly trained embedding needs it to separate the shapes.
    overrides = ["format=[png,coco]", "rounding=kwikcluster", "rounding.scheme.threshold=0.95"]
    cfg = predict_config(tmp_path, trained_checkpoint, folder, output, *overrides)
    assert predict(cfg)["written"] == 3
    assert len(list(output.glob("*_overlay.png"))) == 3  # png as well
    images = COCO(str(output / "images_coco.json"))
    assert [images.imgs[i]["file_name"] for i in (1, 2, 3)] == ["a_black.png", "b0.png", "b1.png"]
    assert images.imgs[1]["height"] == 40 and images.imgs[1]["width"] == 50
    assert images.dataset["categories"] == [{"id": 1, "name": "object"}]
    results = json.loads((output / "predictions_coco.json").read_text())
    assert results, "the shapes have instances"
    assert {r["image_id"] for r in results} <= {2, 3}, "the black image has no instances, hence no results"
    assert all(r["category_id"] == 1 and 0 <= r["score"] <= 1 for r in results)
    loaded = images.loadRes(results)  # pycocotools decodes every mask
    assert all(loaded.annToMask(a).shape == (64, 64) for a in loaded.dataset["annotations"])


def test_coco_results_of_a_coco_data_set_carry_its_own_ids(joint_checkpoint, tmp_path):
    root = tmp_path / "coco"
    annotation_file = write_coco_tree(root)
    output = tmp_path / "out"
    overrides = ["format=coco", "data=coco", f"paths.coco_root={root}", "min_score=0", "min_size=0"]
    assert (
        predict(predict_config(tmp_path, joint_checkpoint, root / "val2017", output, *overrides))["written"]
        == 2
    )
    results = json.loads((output / "predictions_coco.json").read_text())
    assert results and {r["image_id"] for r in results} <= {42, 7}
    assert {r["category_id"] for r in results} <= set(CATEGORY_IDS)
    images = json.loads((output / "images_coco.json").read_text())
    assert sorted(image["id"] for image in images["images"]) == [7, 42]
    assert [c["id"] for c in images["categories"]] == CATEGORY_IDS
    # The file goes to COCOeval as it is, against the data set's own annotations.
    ground_truth = COCO(str(annotation_file))
    evaluation = COCOeval(ground_truth, ground_truth.loadRes(results), iouType="segm")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert -1 <= evaluation.stats[0] <= 1


def test_coco_ids_need_the_data_sets_images_and_a_class_head(trained_checkpoint, joint_checkpoint, tmp_path):
    root = tmp_path / "coco"
    write_coco_tree(root)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (root / "val2017" / "000000000042.png").rename(elsewhere / "holiday.png")
    overrides = ["format=coco", "data=coco", f"paths.coco_root={root}"]
    with pytest.raises(ValueError, match=r"not among the images of .*instances_val2017.json .*holiday.png"):
        predict(predict_config(tmp_path, joint_checkpoint, elsewhere, tmp_path / "out", *overrides))
    with pytest.raises(ValueError, match=r"format=coco with data=coco needs a model with a class head"):
        predict(predict_config(tmp_path, trained_checkpoint, elsewhere, tmp_path / "out", *overrides))


def test_cityscapes_results_are_scored_by_cityscapesscripts(joint_checkpoint, tmp_path, monkeypatch):
    root = tmp_path / "cityscapes"
    images = write_cityscapes_tree(root)
    output = tmp_path / "results"
    overrides = ["format=cityscapes", "recursive=true", "data=cityscapes", f"paths.cityscapes_root={root}",
                 "min_score=0", "min_size=0"]  # fmt: skip
    cfg = predict_config(tmp_path, joint_checkpoint, root / "leftImg8bit" / "val", output, *overrides)
    assert predict(cfg)["written"] == 2
    lines = [line for image in images for line in (output / f"{image.stem}.txt").read_text().splitlines()]
    assert lines, "the model calls every segment an object"
    for line in lines:
        mask_file, label_id, confidence = line.split(" ")
        assert int(label_id) in (24, 25, 26, 27, 28, 31, 32, 33) and 0 <= float(confidence) <= 1
        assert Image.open(output / mask_file).size == (96, 64)
    monkeypatch.chdir(tmp_path)
    scores = cityscapes_instance_ap(root, output, tmp_path)  # reads every file, or fails
    assert 0 <= scores["allAp"] <= 1


def test_cityscapes_results_need_a_cityscapes_model(joint_checkpoint, trained_checkpoint, tmp_path):
    image = tmp_path / "image.png"
    Image.fromarray(np.zeros((20, 20, 3), dtype=np.uint8)).save(image)
    for checkpoint in (joint_checkpoint, trained_checkpoint):  # trained on shapes; no class head
        cfg = predict_config(tmp_path, checkpoint, image, tmp_path / "out", "format=cityscapes")
        with pytest.raises(ValueError, match=r"format=cityscapes writes Cityscapes label ids.*Shapes"):
            predict(cfg)


def test_unknown_formats_and_unwritable_outputs_are_named(trained_checkpoint, tmp_path):
    image = tmp_path / "image.png"
    Image.fromarray(np.zeros((20, 20, 3), dtype=np.uint8)).save(image)
    with pytest.raises(
        ValueError, match=r"format=lvis: lvis is not a format dsc.predict writes; use one of png"
    ):
        predict(predict_config(tmp_path, trained_checkpoint, image, tmp_path / "out", "format=lvis"))
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(OSError, match=r"output=.*a_file/out cannot hold the predictions"):
        predict(predict_config(tmp_path, trained_checkpoint, image, blocker / "out"))


def test_the_embedding_view_on_request_and_the_overlay_alone(trained_checkpoint, tmp_path):
    image = tmp_path / "image.png"
    Image.fromarray(np.zeros((20, 30, 3), dtype=np.uint8)).save(image)
    output = tmp_path / "out"
    predict(
        predict_config(tmp_path, trained_checkpoint, image, output, "embedding=true", "side_by_side=false")
    )
    assert Image.open(output / "image_overlay.png").size == (30, 20)
    # The embedding view: upscaled to at least 256 pixels high (20 × 13), under a title.
    assert Image.open(output / "image_embedding.png").size == (30 * 13, TITLE_HEIGHT + 20 * 13)


def test_the_embedding_view_uses_the_checkpoints_projection(trained_checkpoint):
    from dsc.outputs.png import PaletteMasks
    from dsc.training.checkpoint_record import read_record

    record = read_record(trained_checkpoint)
    assert record.projection is not None and len(record.projection.mean) == 16  # model.embed_dim
    fixed = PaletteMasks(Path("unused"), embedding=True, projection=record.projection)
    rows = torch.nn.functional.normalize(torch.randn(16, 3), dim=0)
    one, other = torch.zeros(16, 8, 8), torch.zeros(16, 8, 8)
    one[:, :4], one[:, 4:] = rows[:, 0, None, None], rows[:, 1, None, None]
    other[:, :2], other[:, 2:] = rows[:, 0, None, None], rows[:, 2, None, None]
    below_title = TITLE_HEIGHT + 1
    assert (fixed.embedding_view(one)[below_title, 0] == fixed.embedding_view(other)[below_title, 0]).all()


def test_overlays_caption_instances_with_a_legend_and_flag_inputs_far_from_training(
    joint_checkpoint, tmp_path, caplog
):
    import logging

    from dsc.outputs.pictures import segment_colours

    source = tmp_path / "inputs"
    source.mkdir()
    shapes = Shapes(num_images=3, seed=4)
    for index in range(3):
        array = shapes.images[index].permute(1, 2, 0).numpy()
        if index > 0:  # 4× the training images' side: far from them
            array = array.repeat(4, axis=0).repeat(4, axis=1)
        Image.fromarray(array).save(source / f"{index}.png")
    output = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="dsc.predict"):
        counts = predict(
            predict_config(tmp_path, joint_checkpoint, source, output, "min_score=0", "min_size=0")
        )
    assert counts["far"] == 2
    assert len([line for line in caplog.messages if "is far from the images" in line]) == 1, "warned once"
    assert "2 of 3 input(s) are far from the training data shapes (64×64 px" in caplog.text
    near = np.asarray(Image.open(output / "0_overlay.png"))
    assert near.shape[0] > 256 and near.shape[1] == 2 * 256 + 4  # input | overlay, then the legend
    assert (near[256:] == segment_colours(1)[0]).all(axis=2).any(), "the legend's first swatch"
    far = np.asarray(Image.open(output / "1_overlay.png"))
    assert (far[:TITLE_HEIGHT, -1] == 32).all(), "a title strip above an input far from training"
    assert far.shape[0] > 256 + TITLE_HEIGHT


def test_evaluate_exports_a_coco_data_sets_own_ids(joint_checkpoint, tmp_path):
    from dsc.evaluate import evaluate
    from dsc.outputs.coco import coco_mask_ap

    root = tmp_path / "coco"
    write_coco_tree(root)
    output = tmp_path / "evaluate"
    overrides = [f"ckpt_path={joint_checkpoint}", "export=coco", "data=coco", f"paths.coco_root={root}",
                 "data.num_workers=0", "trainer.accelerator=cpu"]  # fmt: skip
    metrics = evaluate(compose_config("evaluate", output, *overrides))
    ground_truth = json.loads((output / "ground_truth_coco.json").read_text())
    predictions = json.loads((output / "predictions_coco.json").read_text())
    assert sorted(image["id"] for image in ground_truth["images"]) == [7, 42]
    assert [c["id"] for c in ground_truth["categories"]] == CATEGORY_IDS
    assert predictions and {p["category_id"] for p in predictions} <= set(CATEGORY_IDS)
    assert {a["category_id"] for a in ground_truth["annotations"]} <= set(CATEGORY_IDS)
    assert coco_mask_ap(output) == pytest.approx(metrics["val/mask_ap"], abs=0.005)


def test_an_input_that_holds_no_image_is_refused(trained_checkpoint, tmp_path):
    from dsc.contracts import InvalidInputError

    inputs = tmp_path / "notes"
    inputs.mkdir()
    (inputs / "readme.txt").write_text("not an image")
    with pytest.raises(
        InvalidInputError, match=r"input=.*notes gave nothing to predict: 1 file\(s\) skipped"
    ):
        predict(predict_config(tmp_path, trained_checkpoint, inputs, tmp_path / "out"))
    assert not any((tmp_path / "out").glob("*.png"))


def test_thresholds_choose_the_instances_written_and_say_how_many_were_dropped(
    joint_checkpoint, tmp_path, caplog
):
    import logging

    source = tmp_path / "inputs"
    source.mkdir()
    shapes = Shapes(num_images=3, seed=4)
    for index in range(3):
        Image.fromarray(shapes.images[index].permute(1, 2, 0).numpy()).save(source / f"{index}.png")
    everything = tmp_path / "all"
    counts = predict(predict_config(tmp_path, joint_checkpoint, source, everything, "format=[png,coco]",
                                    "side_by_side=false", "min_score=0", "min_size=0"))  # fmt: skip
    assert counts["dropped"] == 0
    all_records = json.loads((everything / "predictions_coco.json").read_text())
    scores = sorted(record["score"] for record in all_records)
    min_score = scores[len(scores) // 2]  # keeps about half
    min_size = 40
    kept = [r for r in all_records if r["score"] >= min_score and mask_area(r["segmentation"]) >= min_size]
    assert 0 < len(kept) < len(all_records)
    thresholded = tmp_path / "kept"
    thresholds = [f"min_score={min_score}", f"min_size={min_size}"]
    with caplog.at_level(logging.INFO, logger="dsc.predict"):
        counts = predict(predict_config(tmp_path, joint_checkpoint, source, thresholded, "format=[png,coco]",
                                        "side_by_side=false", *thresholds))  # fmt: skip
    records = json.loads((thresholded / "predictions_coco.json").read_text())
    assert sorted((r["image_id"], r["score"]) for r in records) == sorted(
        (r["image_id"], r["score"]) for r in kept
    )
    assert counts["dropped"] == len(all_records) - len(kept)
    assert f"kept {len(kept)} of {len(all_records)} instances; dropped {counts['dropped']}" in caplog.text
    # The partition is the same; the overlay tints only the kept instances of each image.
    for index in range(3):
        assert np.array_equal(
            np.asarray(Image.open(everything / f"{index}.png")),
            np.asarray(Image.open(thresholded / f"{index}.png")),
        )

    def tinted_pixels(folder):
        return sum(
            int(
                (
                    np.asarray(Image.open(folder / f"{index}_overlay.png"))
                    != np.asarray(Image.open(source / f"{index}.png"))
                )
                .any(2)
                .sum()
            )
            for index in range(3)
        )

    assert tinted_pixels(thresholded) < tinted_pixels(everything)


@pytest.mark.parametrize(
    "override,message", [("min_score=1.5", "min_score=1.5"), ("min_size=-1", "min_size=-1")]
)
def test_bad_thresholds_are_named(trained_checkpoint, tmp_path, override, message):
    image = tmp_path / "image.png"
    Image.fromarray(np.zeros((20, 30, 3), dtype=np.uint8)).save(image)
    with pytest.raises(ValueError, match=message):
        predict(predict_config(tmp_path, trained_checkpoint, image, tmp_path / "out", override))
    assert not (tmp_path / "out").exists()


def test_evaluate_writes_thresholded_coco_results_and_scores_every_instance(joint_checkpoint, tmp_path):
    from dsc.evaluate import evaluate

    def run(name, *overrides):
        output = tmp_path / name
        arguments = [f"ckpt_path={joint_checkpoint}", "export=coco", "trainer.accelerator=cpu", *overrides]
        metrics = evaluate(compose_config("evaluate", output, *arguments, "+data.val.num_images=6"))
        return metrics, json.loads((output / "predictions_coco.json").read_text())

    everything_scored, every_instance = run("all")
    scores = sorted(record["score"] for record in every_instance)
    threshold = f"min_score={scores[len(scores) // 2]}"
    metrics, kept = run("kept", threshold)
    assert 0 < len(kept) < len(every_instance)
    assert metrics == everything_scored  # mask AP and PQ count every instance
    thresholded_scores, kept_again = run("scored", threshold, "score_thresholded=true")
    assert kept_again == kept
    assert (
        thresholded_scores["val/pairwise_f1"] == everything_scored["val/pairwise_f1"]
    )  # partitions are unchanged


def test_thresholds_in_the_instance_scores(trained_checkpoint):
    """With the true partition as the rounding's, every instance matches (PQ 1) until a threshold
    drops them: score_thresholded's model.instance_thresholds decides what mask AP and PQ count."""
    import torch

    from dsc.instances import InstanceThresholds
    from dsc.training.checkpoint_record import load_model

    model, _ = load_model(trained_checkpoint)
    shapes = Shapes(num_images=4, seed=1)
    batch = {
        key: torch.stack([shapes[i][key] for i in range(4)]) for key in ("image", "instances", "classes")
    }
    truth = batch["instances"].masked_fill(batch["instances"] == 255, 0)

    def agnostic_pq(thresholds):
        model.instance_thresholds = thresholds
        model.val_instances.reset()
        with torch.no_grad():
            model._update_instance_metrics(batch, model(batch["image"]), truth, *model._scored_pixels(batch))
        return float(model.val_instances.compute()["agnostic/pq"])

    assert agnostic_pq(InstanceThresholds()) == pytest.approx(1.0)
    assert agnostic_pq(InstanceThresholds(min_size=10**6)) < 0.5  # background, a stuff class, still counts
