import sys

import pytest
import torch
from synthetic_clusters import noisy_clusters

from dsc.rounding import Rounding, kwikcluster, kwikcluster_refine, round_embeddings
from dsc.rounding.hashing import position_ids


def as_maps(rows, height=20, width=30):
    return rows.transpose(1, 2).reshape(rows.shape[0], rows.shape[2], height, width)


def test_round_embeddings_matches_the_scheme_on_rows():
    rows, _ = noisy_clusters(batch=3, num_pixels=600, noise=0.3)
    labels = round_embeddings(as_maps(rows), kwikcluster, generator=torch.Generator().manual_seed(1))
    assert labels.shape == (3, 20, 30)
    on_rows = kwikcluster(
        rows, generator=torch.Generator().manual_seed(1), pixel_ids=position_ids(20, 30, "cpu")
    )
    assert torch.equal(labels.flatten(1), on_rows)


@pytest.mark.parametrize("scheme", [kwikcluster, kwikcluster_refine])
def test_an_image_keeps_its_partition_when_padded_into_a_batch(scheme):
    """With the padding marked (pad_collate's image_area), neither the batch's size nor what the
    network makes of the padding changes an image's partition: DDP splits and batch sizes agree."""
    rows, _ = noisy_clusters(batch=2, num_pixels=600, noise=0.35)
    small, large = as_maps(rows)[:1, :, :15, :20], as_maps(rows)[1:]  # 15 × 20 and 20 × 30
    alone = round_embeddings(small, scheme, generator=torch.Generator().manual_seed(4))
    padded = torch.nn.functional.pad(small, (0, 10, 0, 5), value=0.0)
    padded[:, 0, 15:, :] = 1.0  # padding that looks like one more object
    area = torch.zeros(2, 20, 30, dtype=torch.bool)
    area[0, :15, :20] = True
    area[1] = True
    batched = round_embeddings(
        torch.cat([padded, large]), scheme, generator=torch.Generator().manual_seed(4), image_area=area
    )
    assert same_partition(batched[0, :15, :20], alone[0])  # refine numbers clusters per batch
    if scheme is kwikcluster:
        assert torch.equal(batched[0, :15, :20], alone[0])
    assert (batched[0][~area[0]] == -1).all()


def same_partition(first: torch.Tensor, second: torch.Tensor) -> bool:
    """Whether two label maps group the pixels alike (a bijection between their labels)."""
    pairs = torch.stack([first.flatten(), second.flatten()], dim=1).unique(dim=0)
    return len(pairs) == len(first.unique()) == len(second.unique())


def test_semantic_blocking_never_mixes_classes():
    rows, _ = noisy_clusters(batch=2, num_pixels=600, num_clusters=3, noise=0.05)
    classes = torch.randint(0, 2, (2, 20, 30), generator=torch.Generator().manual_seed(0))
    rounding = Rounding(kwikcluster_refine, semantic_blocking=True)
    labels = rounding(as_maps(rows), classes=classes, generator=torch.Generator().manual_seed(0))
    for image_labels, image_classes in zip(labels, classes, strict=True):
        for label in image_labels.unique():
            assert len(image_classes[image_labels == label].unique()) == 1
        # Each (class, true cluster) block is one cluster: 2 classes × 3 clusters.
        assert len(image_labels.unique()) == 6
    with pytest.raises(ValueError, match="semantic_blocking=true needs a class map"):
        rounding(as_maps(rows))


def test_min_size_leaves_no_small_cluster():
    rows, _ = noisy_clusters(batch=2, num_pixels=600, noise=0.45)
    plain = Rounding(kwikcluster)(as_maps(rows), generator=torch.Generator().manual_seed(0))
    merged = Rounding(kwikcluster, min_size=25)(as_maps(rows), generator=torch.Generator().manual_seed(0))
    for image_plain, image_merged in zip(plain, merged, strict=True):
        assert torch.bincount(image_plain.flatten()).min() < 25, "the test needs small clusters to merge"
        assert torch.bincount(image_merged.flatten()).min() >= 25


def test_bad_shapes_are_reported():
    with pytest.raises(ValueError, match=r"\(B, d, H, W\)"):
        round_embeddings(torch.ones(3, 4, 5))
    with pytest.raises(ValueError, match="classes"):
        round_embeddings(torch.ones(1, 2, 4, 5), classes=torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="min_size"):
        Rounding(min_size=-1)


def test_empty_images_and_refine_in_small_chunks(monkeypatch):
    assert round_embeddings(torch.ones(2, 3, 0, 5)).shape == (2, 0, 5)
    rows, _ = noisy_clusters(batch=2, num_pixels=600, noise=0.45)
    whole = kwikcluster_refine(rows, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(sys.modules["dsc.rounding.refine"], "_GAIN_CHUNK_ELEMENTS", 1000)  # tiny chunks
    assert torch.equal(kwikcluster_refine(rows, generator=torch.Generator().manual_seed(0)), whole)
