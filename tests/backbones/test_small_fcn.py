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
