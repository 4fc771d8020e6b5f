"""Scoring a checkpoint with several roundings from one pass of its network."""

import hydra
import pytest
from hydra_configs import TINY, compose_config

from dsc.contracts import InvalidInputError
from dsc.training.checkpoint_record import load_model
from dsc.training.scoring import data_of_split, score_checkpoint, score_roundings, unreadable


def rounding(name: str, *overrides: str):
    cfg = compose_config("train", ".", f"rounding={name}", *overrides)
    return hydra.utils.instantiate(cfg.rounding)


def test_every_rounding_is_scored_from_one_network_pass(trained_checkpoint):
    trainer = compose_config("train", ".", *TINY).trainer
    roundings = {"kwikcluster": rounding("kwikcluster"), "refine": rounding("kwikcluster_refine")}
    passes = []

    def count_passes(model):
        model.backbone.register_forward_hook(lambda *_: passes.append(1))

    # The model's own rounding is KwikCluster: the compared one, with the same seed, scores alike.
    result = score_roundings(str(trained_checkpoint), trainer, roundings, split="test")
    metrics = result.metrics
    for key in ("pairwise_fg_f1", "agnostic/pq", "agnostic/mask_ap"):
        assert metrics[f"val/roundings/kwikcluster/{key}"] == pytest.approx(metrics[f"val/{key}"]), key
    assert 0.0 <= metrics["val/roundings/refine/agnostic/pq"] <= 1.0
    assert result.unreadable == {} and set(result.rounding_seconds) == {"kwikcluster", "refine"}
    assert result.seconds > sum(result.rounding_seconds.values()) > 0
    images = compose_config("train", ".", *TINY).data.val.num_images
    batch = compose_config("train", ".", *TINY).data.val_batch_size
    score_checkpoint(str(trained_checkpoint), trainer, split="test", prepare=count_passes)
    alone = len(passes)
    assert alone == -(-images // batch)
    passes.clear()

    def compare_and_count(model):
        model.compare_roundings(roundings)
        count_passes(model)

    score_checkpoint(str(trained_checkpoint), trainer, split="test", prepare=compare_and_count)
    assert len(passes) == alone  # two more roundings, no more network passes


def test_a_rounding_that_cannot_read_a_model_says_why(trained_checkpoint):
    model, _ = load_model(str(trained_checkpoint))
    assert unreadable(rounding("kwikcluster"), model) is None
    assert "SpectralLoss trains unit vectors" in unreadable(rounding("meanshift"), model)
    assert unreadable(rounding("class_argmax"), model) == "reads the classes head, which this model lacks"
    with pytest.raises(InvalidInputError, match="the rounding argmax"):
        model.compare_roundings({"argmax": rounding("class_argmax")})


def test_splits_are_named_or_refused():
    data = compose_config("train", ".", *TINY).data
    assert data_of_split(data, "test").val.seed == 2000000 and data_of_split(data, "val").val.seed == 1000000
    with pytest.raises(InvalidInputError, match=r"split=train: these data .* have val or test"):
        data_of_split(data, "train")
