import torch

from dsc.utils.grouping import combine_keys, group


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
