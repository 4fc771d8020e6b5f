import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dsc.contracts import InvalidInputError
from dsc.data import VOID
from dsc.ops.projection import EmbeddingProjection
from dsc.outputs.pictures import (
    TITLE_HEIGHT,
    caption_segments,
    comparison_panels,
    embedding_rgb,
    legend,
    match_to_truth,
    order_by_size,
    overlay,
    segment_colours,
    titled,
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


def test_a_fitted_projection_colours_an_embedding_alike_in_every_image():
    rows = torch.nn.functional.normalize(torch.randn(500, 6), dim=1)
    projection = EmbeddingProjection.fit(rows, spread=0.01)
    first = torch.zeros(6, 4, 4)
    first[:, :2] = rows[0, :, None, None]
    first[:, 2:] = rows[1, :, None, None]
    second = torch.zeros(6, 4, 4)
    second[:, :1] = rows[0, :, None, None]
    second[:, 1:] = rows[2, :, None, None]
    assert (projection.rgb(first)[0, 0] == projection.rgb(second)[0, 0]).all(), "fixed colours"
    again = EmbeddingProjection.from_record(projection.as_record())
    assert (again.rgb(first) == projection.rgb(first)).all()
    # Its axes are the principal directions (up to sign) that an independent eigendecomposition finds.
    centred = rows.double() - rows.double().mean(dim=0)
    _, vectors = torch.linalg.eigh(centred.T @ centred)
    cosines = (vectors[:, -3:].flip(-1).float() * projection.axes).sum(dim=0).abs()
    assert cosines == pytest.approx(torch.ones(3), abs=1e-4)
    with pytest.raises(InvalidInputError, match="6-dimensional embeddings, not 5"):
        projection.rgb(torch.zeros(5, 2, 2))


def test_captions_are_written_on_their_segments_and_listed_in_the_legend():
    picture = np.full((80, 200, 3), 200, dtype=np.uint8)
    ids = np.zeros((80, 200), dtype=np.int64)
    ids[10:70, 60:115] = 1
    captioned = caption_segments(picture, ids, ["circle 0.98"])
    changed = np.nonzero((captioned != picture).any(axis=2))
    centre = (changed[0].min() + changed[0].max()) / 2, (changed[1].min() + changed[1].max()) / 2
    assert abs(centre[0] - 39.5) <= 2 and abs(centre[1] - 87) <= 2, "the caption is centred on its segment"
    strip = legend(["circle 0.98", "square 0.51"], 400, note="2 instances")
    assert strip.shape[1] == 400
    for colour in segment_colours(2):
        assert (strip == colour).all(axis=2).any(), "each instance's swatch in its colour"
    many = legend([f"object {k}" for k in range(30)], 400)
    assert many.shape[0] > strip.shape[0]
    assert legend([], 400, note="no instances").shape[0] > 0


def test_a_long_title_wraps_onto_more_lines():
    picture = np.zeros((50, 120, 3), dtype=np.uint8)
    assert titled(picture, "short").shape[0] == TITLE_HEIGHT + 50
    assert titled(picture, "a title far too long for one line of this picture").shape[0] > TITLE_HEIGHT + 50
