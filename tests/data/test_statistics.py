"""``TrainingImages``: the training data measured, and the documented rule for inputs far from it."""

import pytest
import torch

from dsc.data import Shapes
from dsc.data.statistics import TrainingImages


@pytest.fixture(scope="module")
def shapes():
    return Shapes(num_images=40, seed=3)


def test_measure_gives_the_mean_and_std_of_the_measured_images(shapes):
    measured = TrainingImages.measure(shapes, "shapes", max_images=10)
    picks = torch.linspace(0, 39, 10).round().long().tolist()
    images = torch.stack([shapes[index]["image"] for index in picks]).double()
    assert measured.images == 10 and measured.heights == (64, 64) and measured.widths == (64, 64)
    assert measured.mean == pytest.approx(images.mean(dim=(0, 2, 3)).tolist(), abs=1e-4)
    assert measured.std == pytest.approx(images.std(dim=(0, 2, 3), correction=0).tolist(), abs=1e-4)
    assert TrainingImages.from_record(measured.as_record()) == measured


def test_far_follows_the_documented_rule(shapes):
    measured = TrainingImages.measure(shapes, "shapes")
    assert all(measured.far(shapes[index]["image"]) is None for index in range(40))
    large = torch.nn.functional.interpolate(shapes[0]["image"][None], scale_factor=3)[0]
    assert "192×192 pixels (training: 64×64 px)" in measured.far(large)
    assert measured.far(large[:, :128, :128]) is None  # twice the largest size is still near
    grey = torch.full((3, 64, 64), 0.9)  # bright and flat: mean and spread both off
    assert "its colours (channel 0" in measured.far(grey)
    assert measured.describe().startswith("shapes (64×64 px, mean ")


def test_a_data_set_without_images_is_named():
    with pytest.raises(ValueError, match="empty hold no images"):
        TrainingImages.measure([], "empty")


def test_measuring_leaves_the_random_state_of_training_alone(shapes):
    from dsc.data.transforms import RandomScaleCropFlip

    class Augmented:
        def __len__(self):
            return len(shapes)

        def __getitem__(self, index):
            return RandomScaleCropFlip(crop_size=48)(shapes[index])

    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    TrainingImages.measure(Augmented(), "augmented", max_images=8)
    assert torch.equal(torch.rand(3), expected)
