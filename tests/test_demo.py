"""python -m dsc.demo: samples, a checkpoint, predictions and where they are."""

import subprocess
import sys

import numpy as np
from PIL import Image

from dsc.outputs.pictures import TITLE_HEIGHT


def test_demo_predicts_its_samples_and_says_where_the_pictures_are(trained_checkpoint, tmp_path):
    output = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "dsc.demo", f"output={output}", f"ckpt_path={trained_checkpoint}"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    samples = sorted(path.name for path in (output / "inputs").iterdir())
    assert samples == ["photo_voc.jpg"] + [f"shapes_{index}.png" for index in range(6)]
    for name in ("photo_voc", "shapes_0"):
        assert (output / "predictions" / f"{name}.png").is_file()
        assert (output / "predictions" / f"{name}_embedding.png").is_file()
        overlay = Image.open(output / "predictions" / f"{name}_overlay.png")
        assert overlay.height > 256 and overlay.width >= 2 * 256  # input | overlay, the legend beneath
    console = result.stdout + result.stderr
    assert "where things went:" in console and f"{output / 'predictions'}" in console
    # The real photo is named as outside the training data, in the console and on its picture.
    assert "photo_voc.jpg is outside the training data, shapes (64×64 px" in console
    assert "shapes_0.png is outside" not in console
    photo = np.asarray(Image.open(output / "predictions" / "photo_voc_overlay.png"))
    assert (photo[:TITLE_HEIGHT, -1] == 32).all(), "a title strip says so on the picture"
    again = subprocess.run(  # the demo's own outputs are replaced, nothing else is touched
        [sys.executable, "-m", "dsc.demo", f"output={output}", f"ckpt_path={trained_checkpoint}"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
