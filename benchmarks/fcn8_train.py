"""Train FCN-8s with the spectral loss on VOC-format data for a few hundred steps, on a GPU with
bf16 autocast and channels-last: prints the loss every few steps and images per second.

    python benchmarks/fcn8_train.py --voc-root data/voc/VOCdevkit/VOC2012 --steps 300

A VOC-format tree of a single image (augmented) is enough to see the loss fall; the run's figures
go, with the date and the device, in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch
from common import print_table
from torch.utils.data import DataLoader

from dsc.backbones import fcn8s
from dsc.data import RandomScaleCropFlip, VOCInstances, pad_collate
from dsc.losses import SpectralLoss
from dsc.ops import sample_pixels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voc-root", required=True)
    parser.add_argument("--split", default="train")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=320)
    parser.add_argument("--embed-dim", type=int, default=21)
    parser.add_argument("--sample-size", type=int, default=None, help="pixels per image; default: exact loss")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--weights", default=None, help="VGG16 ImageNet file; default: random weights")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-bf16", action="store_true")
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()

    device = torch.device(args.device)
    torch.manual_seed(0)
    dataset = VOCInstances(args.voc_root, args.split, transform=RandomScaleCropFlip(args.crop))
    loader = DataLoader(
        dataset, batch_size=args.batch, shuffle=True, num_workers=args.workers, collate_fn=pad_collate,
        drop_last=False, persistent_workers=args.workers > 0, pin_memory=device.type == "cuda",
    )  # fmt: skip
    model = fcn8s(
        args.embed_dim,
        unit_normalize=False,
        weights="imagenet" if args.weights else None,
        weights_path=args.weights,
    )
    spectral = SpectralLoss()  # from raw outputs, as training_step: fused Triton passes on CUDA
    model = model.to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=not args.no_bf16)

    batches = itertools.chain.from_iterable(itertools.repeat(loader))
    rows, images_seen, started = [], 0, None
    for step in range(1, args.steps + 1):
        batch = next(batches)
        images = batch["image"].to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        instances = batch["instances"].to(device, non_blocking=True)
        pixels = None if args.sample_size is None else sample_pixels(instances, args.sample_size)
        with autocast:
            loss = spectral.from_raw_outputs(model(images), instances, pixel_sample=pixels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step == 5:  # time after warm-up (cudnn autotuning, worker start)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            started, images_seen = time.perf_counter(), 0
        images_seen += len(images)
        if step % args.log_every == 0 or step in (1, args.steps):
            rows.append([str(step), f"{loss.item():.5f}"])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - started if started else float("nan")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    precision = "float32" if args.no_bf16 else "bf16 autocast"
    print(f"FCN-8s, d = {args.embed_dim}, {args.batch} × {args.crop}², {precision}, {name}")
    print_table(["step", "spectral loss"], rows)
    print(f"images / second (steps 6–{args.steps}): {images_seen / elapsed:.3g}")


if __name__ == "__main__":
    main()
