import pytest
import torch

from dsc.instances import DroppedInstances, Instances, InstanceThresholds


def instances_of(sizes, scores):
    masks = torch.zeros(len(sizes), 10, 10, dtype=torch.bool)
    for index, size in enumerate(sizes):
        masks[index].view(-1)[:size] = True
    return Instances(masks, torch.arange(1, len(sizes) + 1), torch.tensor(scores))


def test_an_instance_is_kept_when_it_passes_both_thresholds():
    found = instances_of([5, 30, 30, 2], [0.9, 0.4, 0.6, 0.1])
    tally = DroppedInstances(InstanceThresholds(min_score=0.5, min_size=10))
    kept = tally.apply(found)
    assert kept.classes.tolist() == [3] and kept.masks.shape == (1, 10, 10)
    assert (tally.seen, tally.dropped, tally.low_score, tally.small) == (4, 3, 2, 2)
    assert tally.summary() == (
        "kept 1 of 4 instances; dropped 3: 2 scored below min_score=0.5 and 2 smaller than min_size=10 "
        "pixels (min_score=0 min_size=0 keeps them all)"
    )


def test_thresholds_are_inclusive_and_zero_keeps_everything():
    found = instances_of([10, 1], [0.5, 0.0])
    assert len(InstanceThresholds(0.5, 10).apply(found)) == 1
    tally = DroppedInstances(InstanceThresholds())
    assert len(tally.apply(found)) == 2 and tally.thresholds.keeps_all
    assert tally.summary() == "kept all 2 instances (min_score=0.0, min_size=0)"


def test_no_instances_stay_none():
    assert len(InstanceThresholds(0.5, 16).apply(instances_of([], []))) == 0


@pytest.mark.parametrize(
    "kwargs,message", [({"min_score": -0.1}, "min_score"), ({"min_size": -2}, "min_size")]
)
def test_bad_thresholds_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        InstanceThresholds(**kwargs)
