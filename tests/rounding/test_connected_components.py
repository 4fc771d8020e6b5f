"""Connected components and void filling against breadth-first flood fill and brute-force nearest
pixels on small random maps."""

from collections import deque

import numpy as np
import torch

from dsc.contracts import NetworkOutputs
from dsc.data import VOID
from dsc.rounding import ConnectedComponents, connected_components, fill_void


def flood_fill_partition(class_map: np.ndarray, area: np.ndarray) -> np.ndarray:
    """4-connected regions of equal class by breadth-first search; −1 outside ``area``."""
    labels = np.full(class_map.shape, -1)
    count = 0
    for start in zip(*np.nonzero(area), strict=True):
        if labels[start] >= 0:
            continue
        labels[start] = count
        queue = deque([start])
        while queue:
            y, x = queue.popleft()
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                inside = 0 <= ny < class_map.shape[0] and 0 <= nx < class_map.shape[1]
                if inside and area[ny, nx] and labels[ny, nx] < 0 and class_map[ny, nx] == class_map[y, x]:
                    labels[ny, nx] = count
                    queue.append((ny, nx))
        count += 1
    return labels


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = set(zip(a.ravel().tolist(), b.ravel().tolist(), strict=True))
    return len(pairs) == len(set(a.ravel().tolist())) == len(set(b.ravel().tolist()))


def test_components_match_flood_fill():
    generator = torch.Generator().manual_seed(0)
    classes = torch.randint(0, 3, (3, 13, 17), generator=generator)
    image_area = torch.ones(3, 13, 17, dtype=torch.bool)
    image_area[2, :, 12:] = False  # a padded image
    labels = connected_components(classes, image_area)
    for image in range(3):
        expected = flood_fill_partition(classes[image].numpy(), image_area[image].numpy())
        assert same_partition(labels[image].numpy(), expected)
        inside = labels[image][image_area[image]]
        assert inside.min() == 0 and inside.max() == expected.max()  # ids 0..k−1
    assert (labels[2, :, 12:] == -1).all()


def test_partitioner_reads_the_class_head():
    logits = torch.zeros(1, 3, 4, 5)
    logits[0, 1, :, :2] = 5.0
    logits[0, 1, :, 3:] = 5.0  # class 1 twice, split by a column of class 0
    labels = ConnectedComponents().partition(NetworkOutputs(None, logits))
    assert len(labels.unique()) == 3


def test_void_takes_the_nearest_class():
    generator = torch.Generator().manual_seed(1)
    classes = torch.randint(0, 4, (2, 9, 8), generator=generator)
    classes[torch.rand(2, 9, 8, generator=generator) < 0.4] = VOID
    filled = fill_void(classes)
    for image in range(2):
        known = np.argwhere(classes[image].numpy() != VOID)
        for y, x in np.argwhere(classes[image].numpy() == VOID):
            distances = ((known - (y, x)) ** 2).sum(axis=1)
            nearest = {int(classes[image][tuple(p)]) for p in known[distances == distances.min()]}
            assert int(filled[image, y, x]) in nearest
        keep = classes[image] != VOID
        assert torch.equal(filled[image][keep], classes[image][keep])
    assert torch.equal(fill_void(torch.full((1, 3, 3), VOID)), torch.full((1, 3, 3), VOID))


def test_small_regions_join_the_nearest_larger_region():
    classes = torch.zeros(1, 6, 8, dtype=torch.int64)
    classes[0, :, 4:] = 1
    classes[0, 2, 1] = 2  # a one-pixel region inside class 0's region
    classes[0, 0, 7] = 3  # and one in class 1's corner
    labels = connected_components(classes, min_size=2)
    assert labels.unique().tolist() == [0, 1]
    assert labels[0, 2, 1] == labels[0, 0, 0] and labels[0, 0, 7] == labels[0, 5, 7]
    assert torch.equal(connected_components(classes, min_size=1), connected_components(classes))
