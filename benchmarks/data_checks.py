"""What the checks before the first step cost: a VOC-sized tree's header scan and full read, and
the run-folder checks of ``dsc.train``.

    python benchmarks/data_checks.py [--records 10000] [--full-records 1000] [--workers 2]

Writes a VOC2012 tree of ``--records`` records (a 500×375 JPEG, quality 90, and two palette PNGs
each, as VOC's) into a temporary folder, then times building ``VOCInstances`` (list and path
checks), ``check_headers`` (every file's header), ``probe_labels`` (8 records read) and
``check_full`` on the first ``--full-records`` records in ``--workers`` processes; last, the run
lock and the fresh-folder check, and ``data=shapes``'s module built from its data sets with
``verify=header`` and ``none``. Files are read from the page cache (just written); a cold network
file system is slower.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image

from dsc.data import InstanceDataModule, Shapes, VOCInstances
from dsc.data.verify import check_full, check_headers, probe_labels
from dsc.training.resume import check_fresh_run_directory
from dsc.training.run_lock import LOCK_FILE, take_run_lock

HEIGHT, WIDTH = 375, 500


def write_record(args: tuple[Path, int]) -> None:
    """One VOC-sized record: a smooth photo-like JPEG and instance and class maps of 3 boxes."""
    root, index = args
    rng = np.random.default_rng(index)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH] / 60.0
    base = np.stack([np.sin(x + c + index) + np.cos(y * (c + 1)) for c in range(3)], axis=-1)
    pixels = ((base - base.min()) / np.ptp(base) * 200 + rng.normal(0, 12, base.shape)).clip(0, 255)
    name = f"2026_{index:06d}"
    Image.fromarray(pixels.astype(np.uint8)).save(root / "JPEGImages" / f"{name}.jpg", quality=90)
    instances, classes = np.zeros((HEIGHT, WIDTH), np.uint8), np.zeros((HEIGHT, WIDTH), np.uint8)
    for instance in range(1, 4):
        top, left = rng.integers(0, HEIGHT - 100), rng.integers(0, WIDTH - 100)
        instances[top : top + 90, left : left + 90] = instance
        classes[top : top + 90, left : left + 90] = rng.integers(1, 21)
        instances[top + 90 : top + 93, left : left + 90] = classes[top + 90 : top + 93, left : left + 90] = (
            255
        )
    for folder, values in (("SegmentationObject", instances), ("SegmentationClass", classes)):
        Image.fromarray(values, mode="P").save(root / folder / f"{name}.png")


def write_tree(root: Path, records: int, workers: int) -> Path:
    voc = root / "VOC2012"
    for folder in ("JPEGImages", "SegmentationObject", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / folder).mkdir(parents=True)
    with Pool(workers) as pool:
        pool.map(write_record, [(voc, index) for index in range(records)], chunksize=64)
    names = "".join(f"2026_{index:06d}\n" for index in range(records))
    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text(names)
    return voc


def seconds(function: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--full-records", type=int, default=1_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    rows: list[tuple[str, int, float]] = []
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        written, voc = seconds(lambda: write_tree(root, args.records, args.workers))
        megabytes = sum(f.stat().st_size for f in voc.rglob("*") if f.is_file()) / 2**20
        print(
            f"wrote {args.records} records ({3 * args.records} files, {megabytes:.0f} MiB) in {written:.0f} s"
        )
        built, data = seconds(lambda: VOCInstances(voc, "train"))
        rows.append(("VOCInstances built (list, paths inside the root, files exist)", args.records, built))
        rows.append(
            (
                "check_headers (every file's header and tail)",
                args.records,
                seconds(lambda: check_headers(data, data.expected_files()))[0],
            )
        )
        rows.append(
            (
                "probe_labels (8 records read)",
                8,
                seconds(lambda: probe_labels(data, data.expected_files()))[0],
            )
        )
        subset = VOCInstances(voc, "train")
        subset.ids = subset.ids[: args.full_records]
        full = seconds(lambda: check_full(subset, subset.expected_files(), args.workers))[0]
        rows.append((f"check_full ({args.workers} worker processes)", len(subset.ids), full))
        run = root / "run"
        rows.append(("run lock taken", 1, seconds(lambda: take_run_lock(run))[0]))
        rows.append(("fresh-folder check", 1, seconds(lambda: check_fresh_run_directory(run))[0]))
        (run / LOCK_FILE).unlink()
    train, val = Shapes(2000, seed=0), Shapes(200, seed=1)
    for level in ("none", "header"):
        module = seconds(lambda level=level: InstanceDataModule(train, val, verify=level))[0]
        rows.append((f"data=shapes module built, verify={level}", 2200, module))
    print(f"\n{'step':<64} {'records':>8} {'seconds':>9} {'ms/record':>10}")
    for step, count, elapsed in rows:
        print(f"{step:<64} {count:>8} {elapsed:>9.3f} {1000 * elapsed / count:>10.3f}")
    print(f"\n{os.cpu_count()} CPUs; files read from the page cache")


if __name__ == "__main__":
    main()
