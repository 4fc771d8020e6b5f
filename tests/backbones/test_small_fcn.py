import pytest
import torch

from dsc.backbones import SmallFCN


@pytest.mark.parametrize("height,width", [(64, 64), (37, 50), (1, 1), (5, 9)])
def test_output_matches_input_size(height, width):
    network = SmallFCN(out_channels=7).eval()
    assert network(torch.rand(2, 3, height, width)).shape == (2, 7, height, width)


def test_gradients_reach_every_parameter():
    network = SmallFCN(out_channels=4)
    network(torch.rand(2, 3, 32, 32)).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in network.parameters())


@pytest.mark.parametrize("height,width", [(64, 64), (37, 50), (1, 1)])
def test_context_class_head_gives_every_output_at_input_size(height, width):
    network = SmallFCN(out_channels=7, class_channels=3, class_head="context").eval()
    assert network(torch.rand(2, 3, height, width)).shape == (2, 7, height, width)


def test_context_class_scores_do_not_depend_on_the_fused_features():
    """The class term's gradient reaches the stem and context path, never the embedding's fuse block."""
    network = SmallFCN(out_channels=6, class_channels=2, class_head="context")
    network(torch.rand(2, 3, 32, 32))[:, 4:].square().mean().backward()
    assert all(p.grad.abs().sum() == 0 for p in [*network.fuse.parameters(), *network.head.parameters()])
    assert all(
        p.grad.abs().sum() > 0 for p in [*network.context.parameters(), *network.class_head.parameters()]
    )
    network.zero_grad()
    network(torch.rand(2, 3, 32, 32))[:, :4].square().mean().backward()
    assert network.class_head.weight.grad.abs().sum() == 0


def test_fused_class_head_keeps_one_head_and_its_parameter_names():
    network = SmallFCN(out_channels=6, class_channels=2)
    assert network.class_head is None and network.head.out_channels == 6
    assert set(SmallFCN(out_channels=6).state_dict()) == set(network.state_dict())


def test_context_head_alone_is_a_semantic_network():
    network = SmallFCN(out_channels=4, class_channels=4, class_head="context").eval()
    assert network.fuse is None and network(torch.rand(1, 3, 20, 20)).shape == (1, 4, 20, 20)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"class_head": "side"}, "class_head must be one of fused, context"),
        ({"class_channels": 9}, "class_channels must lie in 0..out_channels"),
        ({"class_head": "context"}, "needs class scores"),
    ],
)
def test_bad_head_arguments_are_reported(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SmallFCN(out_channels=4, **kwargs)
