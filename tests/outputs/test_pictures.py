import numpy as np
import torch
import torch.nn.functional as F

from dsc.data import VOID
from dsc.outputs.pictures import (
    TITLE_HEIGHT,
    comparison_panels,
    embedding_rgb,
    match_to_truth,
    order_by_size,
    overlay,
    titled_grid,
    voc_palette,
)


def test_voc_palette_matches_the_devkit():
    palette = voc_palette()
    assert palette.shape == (256, 3)
    assert palette[:4].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]
    assert palette[15].tolist() == [192, 128, 128]  # person


def test_order_by_size_numbers_the_largest_segment_zero():
    labels = torch.tensor([[5, 5, 5, 5], [2, 2, 9, 9], [9, 7, 7, 7]])
    assert order_by_size(labels).tolist() == [[0, 0, 0, 0], [3, 3, 2, 2], [2, 1, 1, 1]]  # 7 and 9 tie


def test_overlay_tints_objects_draws_boundaries_and_leaves_background():
    image = torch.full((3, 6, 6), 0.5)
    labels = torch.zeros(6, 6, dtype=torch.long)
    labels[2:5, 2:5] = 1
    labels[0, 0] = VOID
    picture = overlay(image, labels)
    assert picture.shape == (6, 6, 3) and picture.dtype == np.uint8
    assert picture[5, 0].tolist() == [128, 128, 128]  # background untinted
    assert picture[3, 3, 0] > picture[3, 3, 1]  # id 1 is VOC red
    assert picture[2, 2].tolist() == [255, 255, 255]  # boundary


def test_embedding_rgb_gives_each_cluster_one_colour():
    labels = torch.arange(3).repeat_interleave(12).view(6, 6)
    embeddings = F.one_hot(labels, 5).permute(2, 0, 1).float()
    picture = embedding_rgb(embeddings)
    colours = {tuple(picture[labels == c][0]) for c in range(3)}
    assert len(colours) == 3
    for c in range(3):
        assert (picture[labels == c] == picture[labels == c][0]).all()
    assert embedding_rgb(torch.ones(1, 4, 4)).shape == (4, 4, 3)  # d = 1


def test_predicted_segments_take_the_colour_of_the_instance_they_match():
    truth = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, VOID, VOID], [2, 2, 0, 0]])
    preds = torch.tensor([[5, 5, 7, 7], [5, 5, 7, 7], [3, 3, 3, 3], [3, 3, 5, 5]])
    assert match_to_truth(preds, truth).tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2], [2, 2, 0, 0]]
    split = torch.tensor([[0, 0, 1, 4], [0, 0, 1, 4], [3, 3, 3, 3], [3, 3, 0, 0]])  # instance 1 in two
    matched = match_to_truth(split, truth)
    assert matched[0, 2] == 1 and matched[0, 3] == 3, "one segment per instance; the other gets a new id"


def test_comparison_panels_are_at_least_256_pixels_high_and_titled():
    image = torch.rand(3, 40, 50)
    truth = torch.zeros(40, 50, dtype=torch.long)
    truth[10:30, 10:30] = 1
    pictures = comparison_panels(image, truth, truth * 4, torch.randn(5, 40, 50))
    assert list(pictures) == ["image", "ground truth", "prediction", "embedding"]
    assert all(p.shape == (280, 350, 3) for p in pictures.values())  # 40 × 7 ≥ 256, nearest neighbour
    assert (pictures["prediction"] == pictures["ground truth"]).all(), "matched colours"
    grid = titled_grid(pictures)
    assert grid.shape == (2 * (TITLE_HEIGHT + 280) + 4, 2 * 350 + 4, 3)
    for top, left in ((0, 0), (0, 354), (TITLE_HEIGHT + 284, 0), (TITLE_HEIGHT + 284, 354)):
        strip = grid[top : top + TITLE_HEIGHT, left : left + 350].max(axis=2)
        lettered_rows = (strip > 128).any(axis=1).sum()
        assert lettered_rows >= 14, "each title is text at least 14 pixels high, legible at 256 px"
    assert (grid[TITLE_HEIGHT : TITLE_HEIGHT + 280, :350] == pictures["image"]).all()
