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
        "| `model.embed_dim=8` | - | - |",
        "| `model.embed_dim=16` | 0.75 | 0.1 |",
        "| `model.embed_dim=32` | 0.5 | - |",
    ]
