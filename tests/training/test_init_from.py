"""model.init_from: a semantic run's weights start an instance run, all but the last layers."""

import pytest
import torch

from dsc.contracts import InvalidInputError, MissingFileError
from dsc.train import train
from dsc.training.checkpoint_record import build_model, read_checkpoint
from dsc.training.init_from import initialize_from

SEMANTIC = ["loss=cross_entropy", "rounding=class_argmax", "model.embed_dim=0", "model.num_classes=4"]


@pytest.fixture(scope="module")
def semantic_checkpoint(tmp_path_factory):
    from hydra_configs import TINY, compose_config

    output_dir = tmp_path_factory.mktemp("semantic")
    train(compose_config("train", output_dir, *TINY, *SEMANTIC))
    return output_dir / "checkpoints" / "last.ckpt"


def test_every_weight_but_the_last_layer_comes_from_the_semantic_checkpoint(
    make_config, semantic_checkpoint, caplog
):
    source = read_checkpoint(semantic_checkpoint)["state_dict"]
    model = build_model(make_config(f"model.init_from={semantic_checkpoint}"))  # d = 16, no classes
    fresh = {key: value.clone() for key, value in model.backbone.state_dict().items()}
    with caplog.at_level("INFO", logger="dsc.training.init_from"):
        skipped = initialize_from(model.backbone, model.init_from)
    assert skipped == ["head.bias", "head.weight"]  # (4, …) there, (16, …) here
    assert "not copied: head.bias, head.weight" in caplog.text
    for key, value in model.backbone.state_dict().items():
        if key.startswith("head."):
            assert torch.equal(value, fresh[key]), f"{key} keeps its fresh initialisation"
        else:
            assert torch.equal(value, source[f"backbone.{key}"]), key


def test_a_run_starts_from_it_and_a_plain_state_dict_works_too(make_config, semantic_checkpoint, tmp_path):
    _, metrics = train(make_config(f"model.init_from={semantic_checkpoint}"))
    assert 0.0 <= metrics["val/pairwise_fg_f1"] <= 1.0
    plain = tmp_path / "network.pth"  # the network's own keys, no "backbone." prefix
    state = read_checkpoint(semantic_checkpoint)["state_dict"]
    torch.save({key.removeprefix("backbone."): value for key, value in state.items()}, plain)
    model = build_model(make_config())
    initialize_from(model.backbone, plain)
    assert torch.equal(model.backbone.stem[0][0].weight, state["backbone.stem.0.0.weight"])


def test_another_architecture_or_a_missing_file_is_refused(make_config, semantic_checkpoint, tmp_path):
    wider = build_model(make_config("backbone.width=24"))
    with pytest.raises(
        InvalidInputError, match=r"another architecture or size: stem\.0\.0\.weight is \(16, 3"
    ):
        initialize_from(wider.backbone, semantic_checkpoint)
    with pytest.raises(MissingFileError, match=r"model\.init_from=.*nope\.ckpt does not exist"):
        initialize_from(wider.backbone, tmp_path / "nope.ckpt")
