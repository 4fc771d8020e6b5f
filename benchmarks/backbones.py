"""Parameters and CPU milliseconds per training step (forward, exact spectral loss, backward, Adam
step) of every tested backbone, side by side in one run, at batch 2 × 256² with d = 21:

    python benchmarks/backbones.py [--size 256] [--batch 2] [--repeats 3] [--device cpu]

The smp rows need the smp extra (pip install "dsc[smp]"); every network has random weights.
"""

from __future__ import annotations

import argparse

import torch
import torchvision
from common import print_table, shapes_embeddings, time_side_by_side

from dsc.backbones import SmallFCN, SmpSegmentation, TorchvisionSegmentation, convert, fcn8s
from dsc.contracts import NetworkOutputs
from dsc.losses import SpectralLoss

EMBED_DIM = 21


def backbones() -> dict[str, torch.nn.Module]:
    """name → backbone giving EMBED_DIM channels."""
    networks: dict[str, torch.nn.Module] = {
        "small_fcn (width 16)": SmallFCN(out_channels=EMBED_DIM),
        "fcn8 (VGG16)": fcn8s(out_channels=EMBED_DIM, unit_normalize=False),
        "torchvision fcn_resnet50": TorchvisionSegmentation("fcn_resnet50", EMBED_DIM, unit_normalize=False),
        "torchvision deeplabv3_resnet50": TorchvisionSegmentation("deeplabv3_resnet50", EMBED_DIM, False),
        "torchvision lraspp_mobilenet_v3_large": TorchvisionSegmentation(
            "lraspp_mobilenet_v3_large", EMBED_DIM, False
        ),
        "convert(deeplabv3_mobilenet_v3_large)": convert(
            torchvision.models.segmentation.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None),
            EMBED_DIM,
        ),
    }
    for arch, encoder in [
        ("Unet", "resnet18"), ("Unet", "resnet34"), ("UnetPlusPlus", "resnet18"), ("FPN", "efficientnet-b0"),
        ("FPN", "tu-resnet18"), ("DeepLabV3Plus", "resnet18"), ("Segformer", "mit_b0"),
    ]:  # fmt: skip
        networks[f"smp {arch} / {encoder}"] = SmpSegmentation(arch, encoder, out_channels=EMBED_DIM)
    return networks


def make_step(network: torch.nn.Module, images: torch.Tensor, instances: torch.Tensor):
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-4)
    loss = SpectralLoss()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        outputs = NetworkOutputs.split(network(images), EMBED_DIM)
        loss.training_loss(outputs, {"instances": instances}).backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    _, instances = shapes_embeddings(args.batch, args.size, 3, 0.0)
    images = torch.rand(args.batch, 3, args.size, args.size, device=device)
    instances = instances.to(device)
    networks = {name: network.to(device).train() for name, network in backbones().items()}
    steps = {name: make_step(network, images, instances) for name, network in networks.items()}
    timings = time_side_by_side(steps, device, repeats=args.repeats, warmup=1)
    reference = timings["small_fcn (width 16)"]
    rows = [
        [name, f"{sum(p.numel() for p in networks[name].parameters()) / 1e6:.2f}", f"{timings[name]:.0f}",
         f"{timings[name] / reference:.1f}"]
        for name in networks
    ]  # fmt: skip
    threads = torch.get_num_threads()
    print(f"training step, batch {args.batch} × {args.size}², d = {EMBED_DIM}, {device}, {threads} threads")
    print_table(["backbone", "parameters (M)", "ms / step", "× small_fcn"], rows)


if __name__ == "__main__":
    main()
