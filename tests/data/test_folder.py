"""data=folder: your own images and instance masks, in both layouts, trained and evaluated."""

import numpy as np
import pytest
import torch
from hydra_configs import compose_config
from PIL import Image
from voc_trees import save_palette_png

from dsc.data import VOID, FolderInstances, Shapes
from dsc.evaluate import evaluate
from dsc.train import train


def write_split(folder, shapes, indices, with_classes=True, sixteen_bit=False):
    """images/, instances/ (8-bit palette, or 16-bit ids 1000+ with 65535 void) and classes/."""
    for sub in ("images", "instances") + (("classes",) if with_classes else ()):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for index in indices:
        item = shapes[index]
        name = f"img_{index:03d}"
        Image.fromarray(shapes.images[index].permute(1, 2, 0).numpy()).save(folder / "images" / f"{name}.jpg")
        instances = item["instances"].numpy()
        if sixteen_bit:
            ids = np.where(instances == VOID, 65535, np.where(instances > 0, 1000 + 7 * instances, 0))
            Image.fromarray(ids.astype(np.uint16)).save(folder / "instances" / f"{name}.png")
        else:
            save_palette_png(instances.astype(np.uint8), folder / "instances" / f"{name}.png")
        if with_classes:
            save_palette_png(item["classes"].numpy().astype(np.uint8), folder / "classes" / f"{name}.png")


def test_sub_folders_with_class_maps_read_as_the_data_set_does(tmp_path):
    shapes = Shapes(num_images=4, seed=2)
    write_split(tmp_path / "train", shapes, [0, 1, 2])
    write_split(tmp_path / "val", shapes, [3])
    (tmp_path / "classes.txt").write_text("background\ndisk\nsquare\ntriangle\n")
    train_set, val_set = FolderInstances(tmp_path, "train"), FolderInstances(tmp_path, "val")
    assert len(train_set) == 3 and len(val_set) == 1
    assert train_set.class_names == ["background", "disk", "square", "triangle"]
    item, expected = val_set[0], shapes[3]
    assert torch.equal(item["instances"], expected["instances"])
    assert torch.equal(item["classes"], expected["classes"])
    assert (item["image"] - expected["image"]).abs().mean() < 0.05  # JPEG of a noisy image


def test_list_files_with_16_bit_ids_and_no_class_maps(tmp_path):
    shapes = Shapes(num_images=3, seed=5)
    write_split(tmp_path, shapes, [0, 1, 2], with_classes=False, sixteen_bit=True)
    (tmp_path / "train.txt").write_text("img_000\nimg_001\n")
    (tmp_path / "val.txt").write_text("img_002\n")
    data = FolderInstances(tmp_path, "train")
    assert len(data) == 2 and data.class_names == ["background", "object"]
    item, expected = data[1], shapes[1]
    # The same partition, renumbered 1..k in the order of the 16-bit ids; void stays void.
    assert torch.equal(item["instances"], expected["instances"])
    assert torch.equal(item["classes"], torch.where(expected["instances"] == VOID, VOID,
                                                    (expected["instances"] > 0).long()))  # fmt: skip


def test_bad_folders_name_the_file_and_the_layout(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"data folder .*missing does not exist: pass paths.folder_root"
    ):
        FolderInstances(tmp_path / "missing")
    shapes = Shapes(num_images=2, seed=1)
    write_split(tmp_path / "train", shapes, [0, 1])
    with pytest.raises(FileNotFoundError, match=r"has no split 'val': expected root/<split>/images/"):
        FolderInstances(tmp_path, "val")
    with pytest.raises(FileNotFoundError, match=r"holds class maps but .*classes.txt does not exist"):
        FolderInstances(tmp_path, "train")
    (tmp_path / "classes.txt").write_text("background\ndisk\n")  # the shapes have 3 classes
    (tmp_path / "train" / "instances" / "img_001.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of the 2 images .*img_001 .*instances/img_001.png"):
        FolderInstances(tmp_path, "train")
    (tmp_path / "train" / "images" / "img_001.jpg").unlink()
    (tmp_path / "train" / "classes" / "img_001.png").unlink()
    data = FolderInstances(tmp_path, "train")
    assert ((shapes[0]["classes"] > 1) & (shapes[0]["classes"] != VOID)).any()
    with pytest.raises(ValueError, match=r"img_000.png holds class values \[[23].*classes.txt names only"):
        data[0]
    instance_file = tmp_path / "train" / "instances" / "img_000.png"
    Image.fromarray(np.zeros((5, 5, 3), dtype=np.uint8)).save(instance_file)
    with pytest.raises(ValueError, match=r"img_000.png is a RGB image: instance masks are 8-bit"):
        data[0]
    Image.fromarray(np.zeros((5, 5), dtype=np.uint8)).save(instance_file)
    Image.fromarray(np.zeros((5, 5), dtype=np.uint8)).save(tmp_path / "train" / "classes" / "img_000.png")
    with pytest.raises(ValueError, match=r"img_000.jpg is 64×64 .*img_000.png is 5×5"):
        data[0]


def test_too_many_16_bit_instances_are_named(tmp_path):
    ids = np.arange(1, 301, dtype=np.uint16).reshape(15, 20)
    Image.fromarray(ids).save(tmp_path / "many.png")
    from dsc.data.folder import read_instance_png

    with pytest.raises(ValueError, match=r"many.png has 300 instances; dsc numbers at most 254"):
        read_instance_png(tmp_path / "many.png")


def test_train_and_evaluate_on_a_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    root = tmp_path / "my_data"
    shapes = Shapes(num_images=12, seed=7)
    write_split(root / "train", shapes, range(8))
    write_split(root / "val", shapes, range(8, 12))
    (root / "classes.txt").write_text("background\ndisk\nsquare\ntriangle\n")
    overrides = [
        "data=folder", f"paths.folder_root={root}", "data.train.transform.crop_size=64",
        "data.batch_size=4", "data.val_batch_size=2", "data.num_workers=0", "trainer.max_epochs=1",
        "trainer.accelerator=cpu", "loss=spectral_joint", "model.num_classes=4",
    ]  # fmt: skip
    _, metrics = train(compose_config("train", tmp_path / "run", *overrides))
    assert 0 <= metrics["val/pairwise_fg_f1"] <= 1 and "val/mask_ap" in metrics
    scored = evaluate(compose_config("evaluate", tmp_path / "eval",
                                     f"ckpt_path={tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}",
                                     "trainer.accelerator=cpu", f"paths.folder_root={root}"))  # fmt: skip
    assert scored["val/pairwise_fg_f1"] == pytest.approx(metrics["val/pairwise_fg_f1"], abs=1e-6)


def test_list_file_names_outside_the_data_root_are_refused(tmp_path):
    from dsc.contracts import InvalidInputError

    root = tmp_path / "data"
    write_split(root, Shapes(num_images=1, seed=1), [0], with_classes=False)
    write_split(tmp_path / "outside", Shapes(num_images=1, seed=1), [0], with_classes=False)
    (root / "train.txt").write_text("img_000\n../../outside/images/img_000\n")
    with pytest.raises(
        InvalidInputError, match=r"1 record\(s\) of .*train\.txt name files outside .*outside/images"
    ):
        FolderInstances(root, "train")
