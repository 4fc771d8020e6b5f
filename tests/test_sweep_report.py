import json

import yaml

from dsc.sweep_report import main


def write_job(sweep, number, overrides, metrics=None):
    job = sweep / str(number)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))


def test_rows_in_job_order_show_what_varies_and_missing_metrics(tmp_path, capsys):
    write_job(tmp_path, 10, ["model.embed_dim=32", "trainer.devices=2"], {"val/pairwise_fg_f1": 0.5})
    write_job(
        tmp_path,
        2,
        ["model.embed_dim=16", "trainer.devices=2"],
        {"val/pairwise_fg_f1": 0.75, "val/loss": 0.1},
    )
    write_job(tmp_path, 0, ["model.embed_dim=8", "trainer.devices=2"])  # failed: no metrics.json
    main([str(tmp_path), "--metrics", "val/pairwise_fg_f1,val/loss"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "All jobs: `trainer.devices=2`"
    assert lines[2:] == [
        "| overrides | val/pairwise_fg_f1 | val/loss |",
        "|---|---|---|",
        "| `model.embed_dim=8` | failed | failed |",
        "| `model.embed_dim=16` | 0.75 | 0.1 |",
        "| `model.embed_dim=32` | 0.5 | - |",
    ]


def test_plot_draws_the_metric_against_each_swept_key(tmp_path, capsys):
    number = 0
    for dim in (8, 16, 32):
        for size in (256, 1024):
            write_job(tmp_path, number, [f"model.embed_dim={dim}", f"loss.sample_size={size}"],
                      {"val/pairwise_fg_f1": dim / 32 + size / 4096})  # fmt: skip
            number += 1
    write_job(tmp_path, number, ["model.embed_dim=64", "loss.sample_size=256"])  # failed
    main([str(tmp_path), "--plot"])
    assert "plot of val/pairwise_fg_f1:" in capsys.readouterr().out
    from PIL import Image

    picture = Image.open(tmp_path / "sweep.png")
    assert picture.width >= 2 * picture.height and picture.format == "PNG"  # two panels side by side


def test_jobs_that_differ_only_in_seed_are_one_row_of_mean_and_sample_std(tmp_path, capsys):
    number = 0
    for dim, scores in ((8, (0.5, 0.7, None)), (16, (0.8, 0.9, 0.85))):
        for seed, score in enumerate(scores):
            metrics = None if score is None else {"val/pairwise_fg_f1": score}
            write_job(tmp_path, number, [f"model.embed_dim={dim}", f"seed={seed}"], metrics)
            number += 1
    main([str(tmp_path), "--metrics", "val/pairwise_fg_f1", "--plot"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[:4] == [
        "| overrides | seeds (finished) | val/pairwise_fg_f1 |",
        "|---|---|---|",
        "| `model.embed_dim=8` | 3 (2) | 0.6000 ± 0.1414 |",  # stdev(0.5, 0.7) = 0.1414
        "| `model.embed_dim=16` | 3 (3) | 0.8500 ± 0.0500 |",
    ]
    from PIL import Image

    picture = Image.open(tmp_path / "sweep.png")  # one panel: embed_dim (seed is no axis)
    assert picture.format == "PNG" and picture.width < 2 * picture.height


def test_undefined_mask_ap_shows_as_not_available_and_is_never_averaged(tmp_path, capsys):
    write_job(
        tmp_path, 0, ["loss.sample_size=4", "seed=0"], {"val/agnostic/mask_ap": -1.0, "val/pairwise_f1": 0.4}
    )
    write_job(
        tmp_path, 1, ["loss.sample_size=4", "seed=1"], {"val/agnostic/mask_ap": -1.0, "val/pairwise_f1": 0.6}
    )
    write_job(
        tmp_path, 2, ["loss.sample_size=8", "seed=0"], {"val/agnostic/mask_ap": -1.0, "val/pairwise_f1": 0.5}
    )
    write_job(
        tmp_path, 3, ["loss.sample_size=8", "seed=1"], {"val/agnostic/mask_ap": 0.5, "val/pairwise_f1": 0.5}
    )
    main([str(tmp_path), "--metrics", "val/agnostic/mask_ap,val/pairwise_f1"])
    rows = capsys.readouterr().out.splitlines()[-2:]
    assert rows[0] == "| `loss.sample_size=4` | 2 (2) | n/a | 0.5000 ± 0.1414 |"
    assert rows[1] == "| `loss.sample_size=8` | 2 (2) | 0.5000 | 0.5000 ± 0.0000 |"
