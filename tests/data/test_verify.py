"""Bad data named when the data set is built: headers, sizes, mask modes, truncation, void sets."""

import json

import numpy as np
import pytest
from PIL import Image
from sample_data import COCO_SAMPLE, VOC_SAMPLE, needs_coco, needs_voc
from voc_trees import save_palette_png, write_voc_tree

from dsc.contracts import InvalidInputError
from dsc.data import COCOInstances, FolderInstances, InstanceDataModule, Shapes, VOCInstances
from dsc.data.verify import FileBackedDataset, check_headers, verify_dataset


def voc(tmp_path, count=3):
    return write_voc_tree(tmp_path, [f"2007_{i:06d}" for i in range(count)])


def truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@needs_voc
def test_the_real_voc_sample_passes_every_level():
    data = VOCInstances(VOC_SAMPLE, "train")
    assert isinstance(data, FileBackedDataset)
    for level in ("header", "full"):
        verify_dataset(data, level, training=True)


def test_a_truncated_jpeg_is_named_from_its_header_check(tmp_path):
    root = voc(tmp_path)
    truncate(root / "JPEGImages" / "2007_000001.jpg")
    with pytest.raises(InvalidInputError) as error:
        verify_dataset(VOCInstances(root, "train"), "header")
    message = str(error.value)
    assert "1 of the 3 records of" in message and "train.txt" in message
    assert "2007_000001: " in message and "2007_000001.jpg: not a readable image" in message
    assert "truncated" in message and "2007_000000" not in message


def test_bytes_after_the_end_of_a_jpeg_are_not_a_problem(tmp_path):
    root = voc(tmp_path, count=1)
    image = root / "JPEGImages" / "2007_000000.jpg"
    image.write_bytes(image.read_bytes() + b"camera trailer" * 10)
    data = VOCInstances(root, "train")
    verify_dataset(data, "header")
    assert data[0]["image"].shape[-2:] == data[0]["instances"].shape


def test_a_truncated_png_mask_is_named(tmp_path):
    root = voc(tmp_path)
    truncate(root / "SegmentationObject" / "2007_000002.png", keep=0.8)
    with pytest.raises(
        InvalidInputError, match=r"2007_000002: .*SegmentationObject/2007_000002\.png: not a readable"
    ):
        verify_dataset(VOCInstances(root, "train"), "header")


def test_a_mask_of_another_size_is_named_with_both_sizes(tmp_path):
    root = voc(tmp_path)
    mask = root / "SegmentationClass" / "2007_000001.png"
    save_palette_png(np.zeros((17, 23), dtype=np.uint8), mask)
    with pytest.raises(InvalidInputError) as error:
        verify_dataset(VOCInstances(root, "train"), "header")
    message = str(error.value)
    assert (
        "2007_000001: sizes differ (H×W)" in message and "SegmentationClass/2007_000001.png 17×23" in message
    )
    assert "JPEGImages/2007_000001.jpg" in message  # which file is which: each under its folder


def test_an_rgb_colour_mask_is_named_as_one(tmp_path):
    root = voc(tmp_path)
    mask = root / "SegmentationObject" / "2007_000000.png"
    colours = np.asarray(Image.open(mask).convert("RGB"))
    Image.fromarray(colours).save(mask)
    with pytest.raises(InvalidInputError) as error:
        verify_dataset(VOCInstances(root, "train"), "header")
    assert "mode RGB, expected P: a colour-coded mask?" in str(error.value)


def test_the_message_lists_the_first_ten_and_counts_the_rest(tmp_path):
    root = voc(tmp_path, count=14)
    for index in range(1, 14):
        (root / "JPEGImages" / f"2007_{index:06d}.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(InvalidInputError) as error:
        verify_dataset(VOCInstances(root, "train"), "header")
    message = str(error.value)
    assert "13 of the 14 records" in message and "… and 3 more" in message
    assert "2007_000010" in message and "2007_000011" not in message


def coco_tree(tmp_path, records):
    """A COCO tree whose images are (file name, written size (H, W), annotated size (H, W))."""
    images_dir = tmp_path / "images"
    images_dir.mkdir()
    images, annotations = [], []
    for image_id, (name, written, annotated) in enumerate(records, start=1):
        if written:
            Image.fromarray(np.zeros((*written, 3), dtype=np.uint8)).save(images_dir / name)
        images.append({"id": image_id, "file_name": name, "height": annotated[0], "width": annotated[1]})
        annotations.append({
            "id": image_id, "image_id": image_id, "category_id": 1, "iscrowd": 0, "area": 4.0,
            "segmentation": [[1, 1, 3, 1, 3, 3, 1, 3]],
        })  # fmt: skip
    annotation_file = tmp_path / "instances.json"
    data = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "thing"}]}
    annotation_file.write_text(json.dumps(data))
    return COCOInstances(images_dir, annotation_file)


def test_a_missing_coco_image_and_a_wrong_annotated_size_are_named(tmp_path):
    data = coco_tree(
        tmp_path, [("a.png", (8, 8), (8, 8)), ("gone.jpg", None, (8, 8)), ("c.png", (8, 9), (9, 8))]
    )
    with pytest.raises(InvalidInputError) as error:
        verify_dataset(data, "header")
    message = str(error.value)
    assert "2 of the 3 records of" in message and "instances.json" in message
    assert "image 2: " in message and "gone.jpg: missing" in message
    assert "image 3: " in message and "c.png is 8×9 (H×W) but is annotated as 9×8" in message
    assert "image 1:" not in message


@needs_coco
def test_the_real_coco_sample_passes_its_header_check():
    data = COCOInstances(COCO_SAMPLE / "images", COCO_SAMPLE / "annotations.json")
    check_headers(data, data.expected_files())


def folder_tree(tmp_path, class_value=1, void=False):
    """Two 16×16 records in root/train/ with a class map; every pixel void when ``void``."""
    for sub in ("images", "instances", "classes"):
        (tmp_path / "train" / sub).mkdir(parents=True)
    (tmp_path / "classes.txt").write_text("background\nthing\n")
    for name in ("a", "b"):
        Image.fromarray(np.full((16, 16, 3), 90, dtype=np.uint8)).save(
            tmp_path / "train" / "images" / f"{name}.png"
        )
        instances = np.full((16, 16), 255 if void else 0, dtype=np.uint8)
        classes = instances.copy()
        if not void:
            instances[4:9, 4:9], classes[4:9, 4:9] = 1, class_value
        save_palette_png(instances, tmp_path / "train" / "instances" / f"{name}.png")
        save_palette_png(classes, tmp_path / "train" / "classes" / f"{name}.png")
    return FolderInstances(tmp_path, "train")


@pytest.mark.parametrize("workers", [0, 2])
def test_full_reads_what_headers_cannot_tell_in_worker_processes(tmp_path, workers):
    data = folder_tree(tmp_path, class_value=7)  # classes.txt names only classes 0 and 1
    verify_dataset(data, "header")
    with pytest.raises(InvalidInputError) as error:
        verify_dataset(data, "full", workers=workers)
    message = str(error.value)
    assert "2 of the 2 records of" in message and "(read in full)" in message
    assert "a: InvalidInputError: " in message and "holds class values [7]" in message


def test_training_masks_that_are_all_void_are_refused_at_either_level(tmp_path):
    data = folder_tree(tmp_path, void=True)
    for level in ("header", "full"):
        with pytest.raises(InvalidInputError, match=r"entirely void \(label 255\).*learns nothing"):
            verify_dataset(data, level, training=True)
    verify_dataset(data, "header")  # a validation set: scoring it names the problem itself


def test_generated_data_and_level_none_check_nothing(tmp_path):
    root = voc(tmp_path, count=1)
    (root / "JPEGImages" / "2007_000000.jpg").write_bytes(b"broken")
    verify_dataset(VOCInstances(root, "train"), "none")
    verify_dataset(Shapes(num_images=2), "full")
    with pytest.raises(
        InvalidInputError, match=r"data\.verify='headers': expected one of none, header, full"
    ):
        verify_dataset(Shapes(num_images=2), "headers")


def test_the_data_module_checks_both_sets_when_built(tmp_path, monkeypatch):
    root = voc(tmp_path)
    (root / "JPEGImages" / "2007_000000.jpg").write_bytes(b"broken")
    train, val = VOCInstances(root, "train"), VOCInstances(root, "val")
    with pytest.raises(InvalidInputError, match=r"records of .*train\.txt"):
        InstanceDataModule(train, val)
    with pytest.raises(InvalidInputError, match=r"records of .*val\.txt"):
        InstanceDataModule(None, val)
    InstanceDataModule(train, val, verify="none")


def test_ddps_launched_processes_check_headers_but_do_not_read_every_file_again(tmp_path, monkeypatch):
    data = folder_tree(tmp_path, class_value=7)  # bad only when read in full
    with pytest.raises(InvalidInputError, match="read in full"):
        InstanceDataModule(None, data, verify="full")
    monkeypatch.setenv("LOCAL_RANK", "1")
    InstanceDataModule(None, data, verify="full")
    (tmp_path / "train" / "images" / "a.png").write_bytes(b"broken")
    with pytest.raises(InvalidInputError, match="checked from their headers"):
        InstanceDataModule(None, data, verify="full")


def test_the_sampled_training_records_are_read_and_their_problems_named(tmp_path):
    data = folder_tree(tmp_path, class_value=7)
    with pytest.raises(InvalidInputError) as error:
        verify_dataset(data, "header", training=True)
    assert "2 of the 2 records" in str(error.value) and "(read in full, 2 sampled records)" in str(
        error.value
    )
    assert "\n  b: InvalidInputError: " in str(error.value)


def test_train_refuses_bad_data_before_any_step_and_then_runs_in_the_same_folder(tmp_path):
    from hydra_configs import offline_environment, run_dsc_train

    data_root, run = tmp_path / "data", tmp_path / "run"
    folder_tree(data_root)
    mask = data_root / "train" / "instances" / "b.png"
    good = mask.read_bytes()
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(mask)  # an RGB mask
    args = [
        "data=folder", f"paths.folder_root={data_root}", "data.val.split=train", "data.num_workers=0",
        "data.batch_size=2", "data.train.transform.crop_size=16", "trainer.max_steps=1",
        "trainer.accelerator=cpu", "logger=csv", f"hydra.run.dir={run}",
    ]  # fmt: skip
    env = offline_environment(tmp_path)
    refused = run_dsc_train(*args, env=env)
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert "b.png: mode RGB, expected P or L or I;16 or I;16B or I" in refused.stdout + refused.stderr
    assert not (run / "checkpoints").exists() or not list((run / "checkpoints").iterdir())
    mask.write_bytes(good)
    fixed = run_dsc_train(*args, env=env)
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    assert (run / "metrics.json").is_file()
