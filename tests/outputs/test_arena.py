"""The arena's rounding table, paired differences and picture, from scored seeds."""

from PIL import Image

from dsc.outputs.arena import (
    against_own,
    draw_arena,
    format_between,
    format_paired,
    format_roundings,
    paired_between,
    paired_to_leader,
    rounding_rows,
)
from dsc.training.scoring import RoundingScores

LACKS_EMBEDDING = "reads the embedding head, which this model lacks"


def runs(own: list[float], refine: list[float] | None, reason: str | None = None) -> list[RoundingScores]:
    scored = []
    for seed, value in enumerate(own):
        metrics = {"val/agnostic/pq": value}
        if refine is not None:
            metrics["val/roundings/refine/agnostic/pq"] = refine[seed]
        scored.append(RoundingScores(metrics, {"refine": reason} if reason else {}, {"refine": 0.1}, 1.0))
    return scored


def arena_rows():
    return rounding_rows(
        {
            "spectral-only": runs([0.69, 0.70, 0.72], [0.72, 0.73, 0.745]),
            "cross-entropy + CC": runs(
                [0.60, 0.62, 0.61], None, "reads the embedding head, which this model lacks"
            ),
        },
        ["refine"],
    )


def test_each_rounding_is_a_spread_over_seeds_or_a_reason():
    rows = arena_rows()
    assert rows["spectral-only"]["refine"]["values"] == [0.72, 0.73, 0.745]
    assert rows["cross-entropy + CC"]["refine"] == "reads the embedding head, which this model lacks"
    difference = against_own(rows)["spectral-only"]["refine"]
    assert difference["differences"] == [0.72 - 0.69, 0.73 - 0.70, 0.745 - 0.72] and difference["low"] > 0
    table = format_roundings(rows, "test")
    assert "on the test split by rounding" in table
    assert "0.732 ± 0.013+" in table  # above the own rounding by a paired interval
    assert "n/a†" in table and "† n/a: reads the embedding head, which this model lacks" in table


def test_the_leader_and_paired_differences():
    rows = {
        "a": {"agnostic_pq": {"mean": 0.7, "std": 0.01, "n": 3, "values": [0.69, 0.70, 0.71]}},
        "b": {"agnostic_pq": {"mean": 0.6, "std": 0.01, "n": 3, "values": [0.59, 0.60, 0.61]}},
        "c": {"agnostic_pq": None},
    }
    leader, differences = paired_to_leader(rows, "agnostic_pq")
    assert leader == "a" and list(differences) == ["b"]
    assert differences["b"]["mean"] == -0.1 or abs(differences["b"]["mean"] + 0.1) < 1e-12
    text = format_paired(rows, {"agnostic_pq": "agn. PQ"})
    assert "agn. PQ: a leads" in text and "b: -0.100 [-0.100, -0.100]*" in text


def test_one_method_against_another_seed_by_seed():
    def summary(values):
        return {"mean": sum(values) / len(values), "std": 0.0, "n": len(values), "values": values}

    rows = {
        "joint": {"pq": summary([0.33, 0.34, 0.36]), "mask_ap": summary([0.02, 0.03, 0.01])},
        "cross-entropy + CC": {"pq": summary([0.28, 0.28, 0.27]), "mask_ap": summary([0.01, 0.02, 0.03])},
    }
    headers = {"pq": "PQ", "mask_ap": "mask AP", "mask_ap50": "AP50"}
    differences = paired_between(rows, "joint", "cross-entropy + CC", headers)
    assert list(differences) == ["pq", "mask_ap"]  # AP50 is in neither row
    assert differences["pq"]["differences"] == [0.33 - 0.28, 0.34 - 0.28, 0.36 - 0.27]
    text = format_between(differences, "joint", "cross-entropy + CC", headers)
    assert text.startswith("joint − cross-entropy + CC (paired t")
    assert "PQ +0.067 [" in text and "]*" in text  # the PQ interval excludes 0
    assert text.endswith("mask AP +0.000 [-0.043, 0.043]")  # t(2) 4.303 × 0.0173 / √3: no star


def test_the_picture_is_a_png(tmp_path):
    by_dimension = {
        "spectral-only": {
            8: {"mean": 0.6, "std": 0.02, "n": 3, "values": [0.58, 0.6, 0.62]},
            16: {"mean": 0.7, "std": 0.01, "n": 3, "values": [0.69, 0.7, 0.71]},
        }
    }
    assert draw_arena(arena_rows(), by_dimension, tmp_path / "arena.png", "test")
    with Image.open(tmp_path / "arena.png") as image:
        assert image.format == "PNG" and image.width > image.height > 100
    assert sorted(path.name for path in tmp_path.iterdir()) == ["arena.png"]
