"""Milliseconds to score predicted partitions pairwise, side by side on the same labels:

* scikit-learn: ``sklearn.metrics.cluster.pair_confusion_matrix`` per image on the CPU (NumPy);
* sorting: the same contingency tables grouped with ``torch.unique`` (a sort, O(n log n)), as a
  reference for what counting with ``bincount`` saves;
* dsc: ``dsc.metrics.pair_counts`` on the whole batch, on each device (contingency tables
  counted in O(n): on the CPU by the compiled kernel ``dsc/ops/contingency.c``, and again as
  without a C compiler, by one ``bincount``; on GPUs by one ``bincount``).

It checks that both give the same pair counts, then prints the table.

    python benchmarks/metrics.py [--batch 16] [--size 512] [--device all|cpu|cuda]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from common import devices, print_table, shapes_embeddings, time_ms, time_side_by_side
from sklearn.metrics.cluster import pair_confusion_matrix

from dsc.metrics import pair_counts
from dsc.ops import grouping
from dsc.rounding import kwikcluster

VOID = 255


def sklearn_counts(preds: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(tp, fp, fn, tn) over unordered pairs of non-void pixels, summed over images."""
    total = np.zeros(4, dtype=np.int64)
    for image_preds, image_target in zip(preds, target, strict=True):
        keep = image_target != VOID
        (tn, fp), (fn, tp) = pair_confusion_matrix(image_target[keep], image_preds[keep]) // 2
        total += [tp, fp, fn, tn]
    return total


def sorted_counts(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(tp, fp, fn, tn) over all valid pairs of the batch, every grouping done by ``torch.unique``."""
    preds, target = preds.flatten(1), target.flatten(1)
    image = torch.arange(len(target), device=target.device)[:, None].expand_as(target)
    keep = target != VOID
    image, preds, target = image[keep], preds[keep], target[keep]

    def pairs_sharing(*keys: torch.Tensor) -> torch.Tensor:
        combined = torch.zeros_like(image)
        for key in keys:
            combined = combined * (int(key.max()) + 1) + key
        sizes = torch.unique(combined, return_counts=True)[1]
        return (sizes * (sizes - 1) // 2).sum()

    both, pred, true, n = (pairs_sharing(image, preds, target), pairs_sharing(image, preds),
                           pairs_sharing(image, target), pairs_sharing(image))  # fmt: skip
    return torch.stack([both, pred - both, true - both, n - pred - true + both])


def bincount_pair_counts(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``pair_counts`` as it runs where no C compiler works: tables counted by ``bincount``."""
    kernel = grouping._CONTINGENCY_KERNEL[:]
    grouping._CONTINGENCY_KERNEL[:] = [None]
    try:
        return pair_counts(preds, target, VOID)
    finally:
        grouping._CONTINGENCY_KERNEL[:] = kernel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--device", default="all")
    args = parser.parse_args()

    embeddings, target = shapes_embeddings(args.batch, args.size, 21, noise=0.4)
    target[:, :4] = VOID
    preds = kwikcluster(embeddings.flatten(2).transpose(1, 2), generator=torch.Generator().manual_seed(0))
    preds = preds.view_as(target)
    flat_preds, flat_target = preds.flatten(1).numpy(), target.flatten(1).numpy()
    expected = sklearn_counts(flat_preds, flat_target)

    cpu = torch.device("cpu")
    rows = [
        [
            "scikit-learn, per image",
            "cpu",
            f"{time_ms(lambda: sklearn_counts(flat_preds, flat_target), cpu):.1f}",
        ]
    ]
    for device in devices(args.device):
        on_device = preds.to(device), target.to(device)
        if not np.array_equal(sorted_counts(*on_device).cpu().numpy(), expected):
            raise AssertionError(f"sorted counts differ from scikit-learn's on {device}")
        milliseconds = time_ms(lambda on_device=on_device: sorted_counts(*on_device), device, repeats=5)
        rows.append(["grouping by sorting (torch.unique)", device.type, f"{milliseconds:.2f}"])
        counts = pair_counts(*on_device, VOID)[0].cpu().numpy()  # row 0: all pairs (row 1: foreground)
        if not np.array_equal(counts, expected):
            raise AssertionError(f"dsc counts {counts} differ from scikit-learn's {expected} on {device}")
        variants = {"dsc pair_counts, batched": lambda on_device=on_device: pair_counts(*on_device, VOID)}
        if device.type == "cpu" and grouping._contingency_kernel() is not None:
            variants["dsc pair_counts, bincount (no compiler)"] = lambda on_device=on_device: (
                bincount_pair_counts(*on_device)
            )
            if not np.array_equal(variants["dsc pair_counts, bincount (no compiler)"]()[0].numpy(), expected):
                raise AssertionError("dsc's bincount counts differ from scikit-learn's")
        for name, milliseconds in time_side_by_side(variants, device, repeats=9).items():
            rows.append([name, device.type, f"{milliseconds:.2f}"])
    sklearn_ms = float(rows[0][2])
    for row in rows:
        row.append(f"{sklearn_ms / float(row[2]):.1f}")
    print(f"pairwise metrics of {args.batch} partitions of {args.size}² pixels (same counts, checked)")
    print_table(["implementation", "device", "ms", "speed-up vs sklearn"], rows)


if __name__ == "__main__":
    main()
