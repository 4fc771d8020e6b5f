"""Writing files all or nothing: a failed write leaves the old file whole and no partial file."""

import errno

import pytest
from PIL import Image

from dsc.outputs.files import replacing, save_image, write_text


def test_a_finished_write_replaces_the_file(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text("old")
    write_text(path, "new")
    assert path.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_a_failed_write_leaves_the_old_file_and_no_partial_one(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"the old model")
    with pytest.raises(OSError, match="No space left"), replacing(path) as partial:
        partial.write_bytes(b"half of a")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert path.read_bytes() == b"the old model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_images_are_saved_in_the_format_of_their_suffix(tmp_path):
    save_image(Image.new("P", (4, 3)), tmp_path / "mask.png")
    with Image.open(tmp_path / "mask.png") as image:
        assert image.format == "PNG" and image.size == (4, 3)
