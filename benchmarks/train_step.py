"""Milliseconds per FCN-8s training step (forward, loss, backward, Adam step) with each loss, side by
side in one run, as ``DeepSpectralClustering.training_step`` computes them, and the ratio to
cross-entropy:

* cross-entropy: the semantic FCN-8s (21 class scores per pixel);
* spectral exact, fused: the loss from raw outputs in two Triton passes (on CUDA);
* spectral exact, plain torch: ``loss.fused=false``;
* spectral sampled: ``--sample-size`` pixels per image, drawn on the device each step.

    python benchmarks/train_step.py [--batch 16] [--size 512] [--steps 20] [--no-bf16]
    python benchmarks/train_step.py --loop --voc-root data/voc/VOCdevkit/VOC2012

``--loop`` then runs ``python -m dsc.train experiment=voc_fcn8_spectral`` on VOC-format data with
real loading and augmentation, and prints its images per second (Lightning's ThroughputMonitor)
beside the bare step's: the data module must keep the GPU fed. The target on an H100 (bf16
autocast, channels-last, 16 × 512²): spectral step ≤ 1.05 × the cross-entropy step.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from common import print_table, shapes_embeddings, time_ms

from dsc.backbones import fcn8s
from dsc.contracts import NetworkOutputs
from dsc.losses import SemanticCrossEntropy, SpectralLoss
from dsc.losses.fused import fused_kernels_available
from dsc.ops import sample_pixels


def make_step(model, optimizer, loss, images, batch, embed_dim, autocast, sample_size):
    """One training step as DeepSpectralClustering.training_step takes it: the outputs split into
    heads (``embed_dim`` embedding channels, the rest class scores), the sample drawn on the device."""

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            outputs = NetworkOutputs.split(model(images), embed_dim)
            if sample_size is not None:
                batch["pixel_sample"] = sample_pixels(batch["instances"].flatten(1), sample_size)
            value = loss.training_loss(outputs, batch)
        value.backward()
        optimizer.step()

    return step


# ThroughputMonitor's rolling images per second of one device (its separator differs by version).
RATES = ("train/device/samples_per_sec", "train|device|samples_per_sec")


def replicated_voc(source_root: Path, copies: int, root: Path) -> Path:
    """A VOC tree whose train split names the annotated images of ``source_root`` ``copies`` times
    (links, so every item is still decoded and augmented from the files): enough images for full
    batches when only a sample of VOC is at hand."""
    ids = [line for line in (source_root / "ImageSets/Segmentation/train.txt").read_text().split() if line]
    ids = [name for name in ids if (source_root / "SegmentationObject" / f"{name}.png").is_file()]
    for folder, suffix in (
        ("JPEGImages", ".jpg"),
        ("SegmentationObject", ".png"),
        ("SegmentationClass", ".png"),
    ):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for copy in range(copies):
            for name in ids:
                (root / folder / f"{name}_{copy}{suffix}").symlink_to(
                    (source_root / folder / f"{name}{suffix}").resolve()
                )
    names = [f"{name}_{copy}" for copy in range(copies) for name in ids]
    (root / "ImageSets/Segmentation").mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        (root / "ImageSets/Segmentation" / f"{split}.txt").write_text("\n".join(names) + "\n")
    return root


def loop_images_per_second(args: argparse.Namespace) -> float:
    """Images per second of ``python -m dsc.train`` over its last logged steps (ThroughputMonitor)."""
    with tempfile.TemporaryDirectory() as run_dir:
        if args.replicate:
            args.voc_root = str(replicated_voc(Path(args.voc_root), args.replicate, Path(run_dir) / "voc"))
        overrides = [
            "experiment=voc_fcn8_spectral",
            "loss.sample_size=null",  # exact, as the bare step it is compared with
            "backbone.weights=null",
            f"paths.voc_root={args.voc_root}",
            f"paths.sbd_root={args.sbd_root or args.voc_root}",
            *(["data=voc"] if args.sbd_root is None else []),
            f"data.batch_size={args.batch}",
            f"data.train.transform.crop_size={args.size}",
            f"data.num_workers={args.workers}",
            f"trainer.max_steps={args.loop_steps}",
            "trainer.limit_val_batches=0",
            f"trainer.accelerator={'gpu' if args.device.startswith('cuda') else 'cpu'}",
            "trainer.log_every_n_steps=5",
            f"trainer.precision={'32-true' if args.no_bf16 else 'bf16-mixed'}",
            "model.channels_last=true",
            "logger=csv",
            "callbacks=none",
            "+callbacks.throughput._target_=pytorch_lightning.callbacks.ThroughputMonitor",
            "+callbacks.throughput.batch_size_fn._target_=hydra.utils.get_method",
            "+callbacks.throughput.batch_size_fn.path=dsc.training.callbacks.images_in_batch",
            f"+callbacks.throughput.window_size={max(2, args.loop_steps // 4)}",
            f"hydra.run.dir={run_dir}/run",
        ]
        env = {**os.environ, "WANDB_MODE": "offline"}
        subprocess.run([sys.executable, "-m", "dsc.train", *overrides], check=True, env=env)
        with next(Path(run_dir, "run", "csv").rglob("metrics.csv")).open() as handle:
            rates = [float(row[key]) for row in csv.DictReader(handle) for key in RATES if row.get(key)]
        if not rates:
            raise RuntimeError(f"no throughput logged: {json.dumps(overrides)}")
        return sum(rates[len(rates) // 2 :]) / len(rates[len(rates) // 2 :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--embed-dim", type=int, default=21)
    parser.add_argument("--sample-size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant (median)")
    parser.add_argument("--no-bf16", action="store_true")
    parser.add_argument("--loop", action="store_true", help="also time python -m dsc.train on VOC data")
    parser.add_argument("--voc-root", default=None)
    parser.add_argument("--sbd-root", default=None, help="train on SBD (the experiment's default) if given")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--loop-steps", type=int, default=100)
    parser.add_argument(
        "--replicate",
        type=int,
        default=0,
        help="train on N copies of the --voc-root sample (see replicated_voc)",
    )
    args = parser.parse_args()

    device = torch.device(args.device)
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True
    _, instances = shapes_embeddings(args.batch, args.size, 2, noise=0.0)
    instances = instances.to(device)
    classes = torch.where(instances == 255, 255, (instances > 0).long() * 7).to(device)
    images = torch.randn(args.batch, 3, args.size, args.size, device=device)
    images = images.contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=not args.no_bf16)

    batch = {"instances": instances, "classes": classes}
    dim = args.embed_dim
    variants = [("cross-entropy (semantic)", SemanticCrossEntropy(), 0, None)]
    if fused_kernels_available(images):
        variants.append(("spectral exact, fused", SpectralLoss(fused=True), dim, None))
    variants += [
        ("spectral exact, plain torch", SpectralLoss(fused=False), dim, None),
        (f"spectral sampled, m = {args.sample_size}", SpectralLoss(), dim, args.sample_size),
    ]
    model = fcn8s(args.embed_dim, unit_normalize=False).to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
    timings = {}
    for name, loss, embed_dim, sample_size in variants:
        step = make_step(model, optimizer, loss, images, dict(batch), embed_dim, autocast, sample_size)
        timings[name] = time_ms(step, device, repeats=args.steps, warmup=3)

    baseline = timings["cross-entropy (semantic)"]
    rows = [
        [name, f"{ms:.1f}", f"{ms / baseline:.3f}", f"{args.batch * 1e3 / ms:.1f}"]
        for name, ms in timings.items()
    ]
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    precision = "float32" if args.no_bf16 else "bf16 autocast"
    shape = f"{args.batch} × {args.size}²"
    print(f"FCN-8s train step, d = {args.embed_dim}, {shape}, {precision}, channels-last, {gpu}")
    print_table(["loss", "ms / step", "× cross-entropy", "images / s"], rows)
    if args.loop:
        if args.voc_root is None:
            parser.error("--loop needs --voc-root")
        bare = args.batch * 1e3 / timings[variants[1][0]]  # spectral exact (fused on CUDA)
        loop = loop_images_per_second(args)
        print_table(
            ["spectral exact", "images / s", "× bare step"],
            [
                ["bare step", f"{bare:.1f}", "1.00"],
                ["python -m dsc.train", f"{loop:.1f}", f"{loop / bare:.2f}"],
            ],
        )


if __name__ == "__main__":
    main()
