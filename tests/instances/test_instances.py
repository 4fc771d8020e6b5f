"""Instances from partitions, checked against per-segment loops over the same tensors."""

import numpy as np
import torch
import torch.nn.functional as F

from dsc.contracts import NetworkOutputs
from dsc.data import VOID
from dsc.instances import OBJECT, panoptic_maps, predicted_instances, true_instances


def reference_instances(labels, embeddings, probabilities, valid):
    """One image, segment by segment: (class, score, mask) of every non-background segment."""
    result = []
    for segment in np.unique(labels[labels >= 0]):
        inside = labels == segment
        mean_probabilities = probabilities[:, inside].mean(axis=1)
        class_id = int(mean_probabilities.argmax())
        if class_id == 0:
            continue
        vectors = embeddings[:, inside]
        direction = vectors.sum(axis=1) / np.linalg.norm(vectors.sum(axis=1))
        agreement = float((direction @ vectors).mean())
        mask = inside & valid
        if mask.any():
            result.append((class_id, mean_probabilities[class_id] * agreement, mask))
    return result


def test_classes_and_scores_match_a_per_segment_loop():
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 5, (2, 9, 11), generator=generator)
    labels[1, :, :3] = -1  # padding
    embeddings = F.normalize(torch.randn(2, 6, 9, 11, generator=generator), dim=1)
    logits = 3 * torch.randn(2, 4, 9, 11, generator=generator)
    valid = torch.rand(2, 9, 11, generator=generator) > 0.2
    outputs = NetworkOutputs(embeddings, logits)

    instances = predicted_instances(labels, outputs, valid=valid)

    for image in range(2):
        expected = reference_instances(
            labels[image].numpy(),
            embeddings[image].numpy(),
            logits[image].softmax(dim=0).numpy(),
            valid[image].numpy(),
        )
        assert len(instances[image]) == len(expected)
        for k, (class_id, score, mask) in enumerate(expected):
            assert int(instances[image].classes[k]) == class_id
            assert abs(float(instances[image].scores[k]) - score) < 1e-5
            assert np.array_equal(instances[image].masks[k].numpy(), mask)


def test_class_agnostic_background_is_the_segment_on_most_of_the_border():
    labels = torch.zeros(1, 8, 8, dtype=torch.int64)
    labels[0, 2:5, 2:5] = 1  # an object inside
    labels[0, 6:, 6:] = 2  # an object in a corner: on the border, but less of it than segment 0
    embeddings = F.one_hot(labels, 3).permute(0, 3, 1, 2).float()

    (instances,) = predicted_instances(labels, NetworkOutputs(embeddings, None))

    assert instances.classes.tolist() == [OBJECT, OBJECT]
    assert instances.masks.sum(dim=(1, 2)).tolist() == [9, 4]
    torch.testing.assert_close(instances.scores, torch.ones(2))  # unanimous embeddings: agreement 1


def test_void_only_segments_and_padding_are_no_instances():
    labels = torch.tensor([[[0, 0, 1, 1], [0, 0, 2, -1]]])
    logits = torch.tensor([0.0, 5.0]).view(1, 2, 1, 1).expand(1, 2, 2, 4)  # every segment class 1
    valid = torch.tensor([[[True, True, False, False], [True, True, True, True]]])

    (instances,) = predicted_instances(labels, NetworkOutputs(None, logits), valid=valid)

    assert instances.masks.sum(dim=(1, 2)).tolist() == [4, 1]  # segment 1 is void only


def test_true_instances_take_their_majority_class_and_skip_background_and_void():
    ids = torch.tensor([[[0, 1, 1, VOID], [2, 2, 2, 300]]])
    classes = torch.tensor([[[0, 3, 3, VOID], [1, 1, VOID, 2]]])

    (instances,) = true_instances(ids, classes)

    assert instances.classes.tolist() == [3, 1, 2]
    assert instances.masks.sum(dim=(1, 2)).tolist() == [2, 3, 1]
    assert torch.equal(instances.scores, torch.ones(3))


def test_panoptic_maps_mark_instances_background_and_void():
    ids = torch.tensor([[[0, 1, 1], [2, 2, VOID]]])
    classes = torch.tensor([[[0, 3, 3], [1, 1, VOID]]])
    maps = panoptic_maps(true_instances(ids, classes), ids == VOID)
    assert maps[0, ..., 0].tolist() == [[0, 3, 3], [1, 1, VOID]]
    assert maps[0, ..., 1].tolist() == [[0, 1, 1], [2, 2, 0]]
