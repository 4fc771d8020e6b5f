import json

from dsc.outputs.metrics_file import format_metrics_table, write_metrics


def test_table_places_each_metric_in_its_row_and_column():
    metrics = {"val/pairwise_precision": 0.25, "val/semantic_oracle/pairwise_fg_f1": 0.5}
    lines = format_metrics_table(metrics).splitlines()
    assert lines[0].split() == [
        "instances",
        "semantic",
        "oracle",
        "fg",
        "instances",
        "fg",
        "semantic",
        "oracle",
    ]
    assert lines[2].split() == ["precision", "0.2500", "-", "-", "-"]
    assert lines[4].split() == ["f1", "-", "-", "-", "0.5000"]


def test_metrics_json_round_trips(tmp_path):
    write_metrics({"b": 1.0, "a": 0.5}, tmp_path / "run" / "metrics.json")
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == {"a": 0.5, "b": 1.0}


def test_unseen_columns_appear_only_after_training_without_classes():
    assert "unseen" not in format_metrics_table({"val/pairwise_f1": 0.5})
    header = format_metrics_table({"val/unseen/pairwise_fg_f1": 0.25}).splitlines()[0]
    assert "fg unseen classes" in header and "fg seen classes" in header


def test_metrics_json_holds_no_nan(tmp_path, caplog):
    write_metrics({"val/a": float("nan"), "val/b": 0.5, "val/c": float("inf")}, tmp_path / "metrics.json")
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"val/a": None, "val/b": 0.5, "val/c": None}
    assert "NaN" not in (tmp_path / "metrics.json").read_text()
    assert "val/a, val/c" in caplog.text


def test_mask_ap_without_true_instances_shows_as_not_available():
    metrics = {"val/agnostic/pq": 0.0, "val/agnostic/mask_ap": -1.0, "val/agnostic/mask_ap50": 0.25}
    lines = format_metrics_table(metrics).splitlines()
    ap_row = next(line for line in lines if line.startswith("mask_ap "))
    assert ap_row.split() == ["mask_ap", "-", "n/a", "-", "-"]
    assert next(line for line in lines if line.startswith("mask_ap50")).split()[2] == "0.2500"
