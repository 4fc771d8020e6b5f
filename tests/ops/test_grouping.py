import shutil

import pytest
import torch

from dsc.ops import grouping
from dsc.ops.grouping import combine_keys, group, instance_slots


def reference_groups(*keys):
    """Group index of each item from Python tuples, groups in sorted tuple order."""
    tuples = list(zip(*(key.tolist() for key in keys), strict=True))
    order = {value: index for index, value in enumerate(sorted(set(tuples)))}
    return torch.tensor([order[t] for t in tuples])


def test_combined_keys_group_and_order_like_tuples():
    generator = torch.Generator().manual_seed(0)
    keys = [torch.randint(-3, 4, (500,), generator=generator) for _ in range(3)]
    _, inverse = torch.unique(combine_keys(*keys), return_inverse=True)
    assert torch.equal(inverse, reference_groups(*keys))


def test_huge_key_ranges_fall_back_without_overflow():
    keys = [torch.tensor([0, 2**40, 0, 2**40]), torch.tensor([5, 5, 2**40, 5])]
    _, inverse = torch.unique(combine_keys(*keys), return_inverse=True)
    assert torch.equal(inverse, reference_groups(*keys))


def test_group_returns_image_of_each_group_and_sizes():
    image = torch.tensor([0, 0, 0, 1, 1, 2])
    label = torch.tensor([7, 3, 7, 3, 3, 9])
    group_of_item, image_of_group, sizes = group(image, label)
    assert group_of_item.tolist() == [1, 0, 1, 2, 2, 3]
    assert image_of_group.tolist() == [0, 0, 1, 2] and sizes.tolist() == [1, 2, 2, 1]


def test_dense_and_sorted_grouping_agree():
    from collections import Counter

    generator = torch.Generator().manual_seed(1)
    for high in (5, 10**9):  # a dense table, and a range only a sort can group
        image = torch.randint(0, 3, (400,), generator=generator)
        label = (
            torch.randint(-2, high, (400,), generator=generator)
            if high < 100
            else torch.tensor([0, 10**9, -(10**9)] * 133 + [7])
        )
        group_of_item, image_of_group, sizes = group(image, label)
        assert torch.equal(group_of_item, reference_groups(image, label))
        expected = Counter(zip(image.tolist(), label.tolist(), strict=True))
        assert sizes.tolist() == [expected[key] for key in sorted(expected)]
        assert image_of_group.tolist() == [key[0] for key in sorted(expected)]


def brute_force_cells(preds, target):
    from collections import Counter

    counts = Counter()
    for image, (row_p, row_t) in enumerate(zip(preds.tolist(), target.tolist(), strict=True)):
        counts.update((image, p, t) for p, t in zip(row_p, row_t, strict=True))
    return sorted((*key, count) for key, count in counts.items())


def contingency_cases():
    generator = torch.Generator().manual_seed(2)
    return [
        (
            torch.randint(-1, 6, (3, 200), generator=generator),
            torch.randint(0, 4, (3, 200), generator=generator),
        ),
        # runs of one cell, as neighbouring pixels make them
        (
            torch.randint(-5, 40, (2, 60), generator=generator).repeat_interleave(7, dim=1),
            torch.randint(0, 3, (2, 84), generator=generator).repeat_interleave(5, dim=1),
        ),
        # void 255 beside a few classes: columns renumbered through a lookup table
        (torch.randint(0, 3000, (2, 300), generator=generator), torch.tensor([0, 1, 255]).repeat(2, 100)),
        # pred and target ranges too wide for a table: renumbered by sorting
        (torch.randint(0, 10**12, (2, 50), generator=generator), torch.randint(-(10**12), 10**12, (2, 50))),
        (torch.tensor([[-(2**63), 2**63 - 1]]), torch.tensor([[3, 4]])),  # a range that overflows int64
        (
            torch.randint(0, 9, (1, 77), generator=generator, dtype=torch.int32),
            torch.ones(1, 77, dtype=torch.int32),
        ),
        (torch.zeros(2, 0, dtype=torch.int64), torch.zeros(2, 0, dtype=torch.int64)),
    ]


@pytest.mark.parametrize("compiled", [True, False])
def test_contingency_cells_match_a_brute_force_count(compiled, monkeypatch):
    if not compiled:
        monkeypatch.setattr(grouping, "_contingency_cells_compiled", lambda *args: None)
    monkeypatch.setattr(grouping, "_CELLS_PER_IMAGE", 5)  # images with more cells are counted again
    for preds, target in contingency_cases():
        image, pred, true, size = grouping.contingency_cells(preds, target)
        got = list(zip(image.tolist(), pred.tolist(), true.tolist(), size.tolist(), strict=True))
        assert got == brute_force_cells(preds, target)  # ordered by image, pred label, target label
        assert all(column.dtype == torch.int64 for column in (image, pred, true, size))


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler (cc)")
def test_the_compiled_kernel_counts_int64_labels_on_cpus():
    preds, target = contingency_cases()[0]
    assert grouping._contingency_cells_compiled(preds, target) is not None
    assert grouping._contingency_cells_compiled(preds.int(), target) is None  # the bincount path's


def test_contingency_cells_fall_back_to_bincount_without_a_compiler(monkeypatch):
    monkeypatch.setattr(grouping, "_CONTINGENCY_KERNEL", [])
    monkeypatch.setenv("CC", "no-such-compiler")
    preds, target = contingency_cases()[1]
    with pytest.warns(RuntimeWarning, match="no C compiler 'no-such-compiler'"):
        image, pred, true, size = grouping.contingency_cells(preds, target)
    got = list(zip(image.tolist(), pred.tolist(), true.tolist(), size.tolist(), strict=True))
    assert got == brute_force_cells(preds, target)


def test_instance_ids_of_any_range_give_the_same_slots():
    labels = torch.tensor([[5, 5, 9, 255, 7], [255, 255, 255, 255, 255], [3, 2**40, 3, 2**40, 255]])
    slots, num_slots = instance_slots(labels, labels != 255)  # ids up to 2^40: grouped by sorting
    assert num_slots == 3
    assert slots.tolist() == [[0, 0, 2, 3, 1], [3, 3, 3, 3, 3], [0, 1, 0, 1, 3]]
    small, small_slots = instance_slots(labels.clamp(max=300), labels != 255)  # a dense table of ids
    assert small_slots == 3 and torch.equal(small, slots)
    extremes = torch.tensor([[-(2**63), 2**63 - 1, 7, 255, 7]])  # a range that overflows int64
    assert instance_slots(extremes, extremes != 255)[0].tolist() == [[0, 2, 1, 3, 1]]
