import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO
from sample_data import COCO_SAMPLE, needs_coco

from dsc.data import VOID, CityscapesInstances, COCOInstances, Shapes, WithoutClasses
from dsc.data.cityscapes import instance_maps


@pytest.fixture(scope="module")
def coco():
    return COCOInstances(COCO_SAMPLE / "images", COCO_SAMPLE / "annotations.json")


@needs_coco
def test_coco_instances_follow_the_documented_rules(coco):
    reference = COCO(str(COCO_SAMPLE / "annotations.json"))
    categories = sorted(reference.getCatIds())
    assert len(coco.class_names) == 81 and coco.class_names[categories.index(44) + 1] == "bottle"
    for index, image_id in enumerate(coco.image_ids):
        item = coco[index]
        instances, classes = item["instances"].numpy(), item["classes"].numpy()
        annotations = reference.loadAnns(reference.getAnnIds(imgIds=image_id))
        masks = {a["id"]: reference.annToMask(a).astype(bool) for a in annotations}
        crowd = np.zeros_like(instances, dtype=bool)
        for a in annotations:
            if a["iscrowd"]:
                crowd |= masks[a["id"]]
        assert (instances[crowd] == VOID).all() and (classes[crowd] == VOID).all()
        # Independent painting: each pixel goes to the smallest object covering it.
        owner_area = np.full(instances.shape, np.inf)
        owner_class = np.zeros(instances.shape, dtype=np.int64)
        for a in (a for a in annotations if not a["iscrowd"]):
            smaller = masks[a["id"]] & (a["area"] < owner_area)
            owner_area[smaller] = a["area"]
            owner_class[smaller] = categories.index(a["category_id"]) + 1
        valid = ~crowd
        np.testing.assert_array_equal(classes[valid], owner_class[valid])
        objects = set(np.unique(instances[valid & (instances > 0)]).tolist())
        assert objects == set(range(1, len(objects) + 1)), "ids are consecutive"
        for instance in objects:
            assert len(np.unique(classes[instances == instance])) == 1
    assert any((coco[i]["instances"] == VOID).any() for i in range(len(coco))), "the crowd RLE became void"


def test_coco_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"instances_val2017\.json does not exist.*cocodataset"):
        COCOInstances(tmp_path, tmp_path / "instances_val2017.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"broken\.json"):
        COCOInstances(tmp_path, tmp_path / "broken.json")
    annotations = json.loads((COCO_SAMPLE / "annotations.json").read_text()) if COCO_SAMPLE.is_dir() else None
    if annotations:
        (tmp_path / "a.json").write_text(json.dumps(annotations))
        with pytest.raises(OSError, match=r"cannot read image .*\.jpg"):
            COCOInstances(tmp_path, tmp_path / "a.json")[1]


def test_cityscapes_rules_on_label_values():
    values = np.array(
        [[7, 23, 26000, 26001], [24000, 26, 1, 29000], [26000, 24000, 33002, 0]], dtype=np.uint16
    )
    instances, classes = instance_maps(values)
    assert instances.tolist() == [[0, 0, 2, 3], [1, VOID, VOID, VOID], [2, 1, 4, VOID]]
    assert classes.tolist() == [[0, 0, 3, 3], [1, VOID, VOID, VOID], [3, 1, 8, VOID]]


def test_cityscapes_tree(tmp_path):
    values = np.full((40, 60), 7, dtype=np.uint16)  # road
    values[5:20, 5:25] = 26000  # a car
    values[10:30, 30:40] = 24001  # a person
    values[0:3, :] = 1  # ego vehicle: void
    for split in ("train", "val"):
        (tmp_path / "gtFine" / split / "aachen").mkdir(parents=True)
        (tmp_path / "leftImg8bit" / split / "aachen").mkdir(parents=True)
        Image.fromarray(values).save(
            tmp_path / "gtFine" / split / "aachen" / "aachen_000000_000019_gtFine_instanceIds.png"
        )
        Image.fromarray(np.zeros((40, 60, 3), dtype=np.uint8)).save(
            tmp_path / "leftImg8bit" / split / "aachen" / "aachen_000000_000019_leftImg8bit.png"
        )
    item = CityscapesInstances(tmp_path, "val")[0]
    assert item["image"].shape == (3, 40, 60)
    assert sorted(item["instances"].unique().tolist()) == [0, 1, 2, VOID]
    assert (item["classes"][5:20, 5:25] == 3).all() and (item["classes"][10:30, 30:40] == 1).all()
    with pytest.raises(FileNotFoundError, match=r"has no leftImg8bit/test/.*cityscapes-dataset"):
        CityscapesInstances(tmp_path, "test")


def test_excluded_classes_are_void_in_training_items_only():
    shapes = Shapes(8, seed=3)
    hidden = WithoutClasses(shapes, [2])
    for index in range(8):
        original, item = shapes[index], hidden[index]
        was_hidden = original["classes"] == 2
        assert (item["instances"][was_hidden] == VOID).all() and (item["classes"][was_hidden] == VOID).all()
        assert torch.equal(item["instances"][~was_hidden], original["instances"][~was_hidden])
    assert sum(int((shapes[i]["classes"] == 2).sum()) for i in range(8)) > 0, "the test hides something"


def small_coco(tmp_path: Path) -> dict:
    """A well-formed instances file of one 10×12 image with one polygon and one RLE annotation."""
    Image.fromarray(np.zeros((10, 12, 3), dtype=np.uint8)).save(tmp_path / "a.jpg")
    return {
        "images": [{"id": 1, "file_name": "a.jpg", "height": 10, "width": 12}],
        "categories": [{"id": 3, "name": "car"}],
        "annotations": [
            {"id": 7, "image_id": 1, "category_id": 3, "area": 20.0, "iscrowd": 0,
             "segmentation": [[1, 1, 6, 1, 6, 5, 1, 5]]},
            {"id": 8, "image_id": 1, "category_id": 3, "area": 120.0, "iscrowd": 1,
             "segmentation": {"size": [10, 12], "counts": [0, 120]}},
        ],
    }  # fmt: skip


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda d: d["annotations"][0].update(segmentation=[]), r"annotation id 7: segmentation is empty"),
        (lambda d: d["annotations"][0].update(segmentation=[[1, 1, 6, 1]]), r"7: a polygon has 4"),
        (lambda d: d["annotations"][0].update(category_id=99), r"annotation id 7: category_id 99 is not"),
        (lambda d: d["annotations"][1]["segmentation"].update(size=[12, 10]), r"8: RLE size \[12, 10\]"),
        (lambda d: d["annotations"][1]["segmentation"].update(counts=[0, 100]), r"8: RLE counts add up"),
        (lambda d: d["annotations"][0].pop("area"), r"annotation id 7: no area"),
        (lambda d: d["annotations"][0].update(image_id=5), r"annotation id 7: image_id 5 is not"),
        (lambda d: d["annotations"].append([1, 2]), r"annotations\[2\]: a list, not a dict"),
        (lambda d: d.pop("categories"), r"no 'categories' list"),
        (lambda d: d["images"][0].update(file_name=5), r"image id 1: file_name 5 is not a file name"),
        (lambda d: d["images"][0].update(height=0), r"image id 1: height × width 0 × 12 is not"),
        (lambda d: d["annotations"][0].update(id=[7]), r"annotation id \[7\]: id not a whole number"),
        (lambda d: d["annotations"][0].update(image_id=True), r"7: image_id not a whole number"),
        (lambda d: d["annotations"][0].update(segmentation=[[1, 1, 1e9, 1, 6, 5]]), r"7: a polygon reaches"),
        (lambda d: d["annotations"][0].update(segmentation=[[1, 1, float("nan"), 1, 6, 5]]), r"7: .*finite"),
        (lambda d: d["annotations"][0].update(area=float("inf")), r"7: area inf is not a finite"),
        (lambda d: d["annotations"][0].update(iscrowd=2), r"7: iscrowd 2 is not 0 or 1"),
        (lambda d: d["categories"][0].update(id="3"), r"categories\[0\]: needs a whole-number id"),
    ],
)  # fmt: skip
def test_malformed_coco_annotations_fail_at_construction_naming_file_and_annotation(
    tmp_path, damage, message
):
    data = small_coco(tmp_path)
    (tmp_path / "good.json").write_text(json.dumps(data))
    assert COCOInstances(tmp_path, tmp_path / "good.json")[0]["instances"].shape == (10, 12)
    damage(data)
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"bad\.json are malformed") as error:
        COCOInstances(tmp_path, tmp_path / "bad.json")
    assert error.match(message)


def test_a_coco_file_nested_past_the_stack_is_named(tmp_path):
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match=r"cannot read COCO annotations .*deep\.json: nested past"):
        COCOInstances(tmp_path, tmp_path / "deep.json")


def test_a_coco_file_holding_a_list_is_named(tmp_path):
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(ValueError, match=r"(?s)list\.json are malformed.*holds a list, not a dict"):
        COCOInstances(tmp_path, tmp_path / "list.json")


def test_coco_image_of_another_size_than_annotated_names_both_files(tmp_path):
    data = small_coco(tmp_path)
    data["images"][0].update(height=12, width=10)
    data["annotations"] = data["annotations"][:1]
    (tmp_path / "sizes.json").write_text(json.dumps(data))
    with pytest.raises(
        ValueError, match=r"a\.jpg is \(10, 12\) .*sizes\.json annotates image id 1 as \(12, 10\)"
    ):
        COCOInstances(tmp_path, tmp_path / "sizes.json")[0]


def test_cityscapes_label_files_without_images_are_listed(tmp_path):
    folder = tmp_path / "gtFine" / "val" / "aachen"
    folder.mkdir(parents=True)
    (tmp_path / "leftImg8bit" / "val" / "aachen").mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4), dtype=np.uint16)).save(folder / "aachen_1_gtFine_instanceIds.png")
    with pytest.raises(FileNotFoundError, match=r"1 of the 1 images .*aachen_1_leftImg8bit\.png"):
        CityscapesInstances(tmp_path, "val")


@pytest.mark.parametrize("outside", ["../outside/secret.png", "ABSOLUTE", "link.png"])
def test_coco_file_names_outside_the_image_folder_are_refused(tmp_path, outside):
    from dsc.contracts import InvalidInputError

    images = tmp_path / "images"
    images.mkdir()
    data = small_coco(images)
    secret = tmp_path / "outside" / "secret.png"
    secret.parent.mkdir()
    Image.fromarray(np.full((10, 12, 3), 255, dtype=np.uint8)).save(secret)
    (images / "link.png").symlink_to(secret)  # a symlink inside that points outside
    data["images"][0]["file_name"] = str(secret) if outside == "ABSOLUTE" else outside
    (tmp_path / "escape.json").write_text(json.dumps(data))
    with pytest.raises(
        InvalidInputError, match=r"1 record\(s\) of .*escape\.json name files outside .*image 1"
    ):
        COCOInstances(images, tmp_path / "escape.json")
