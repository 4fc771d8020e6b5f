import functools
from types import SimpleNamespace

import pytest
import torch

from dsc.backbones import SmallFCN
from dsc.contracts import NetworkOutputs
from dsc.data import VOID
from dsc.losses import JointLoss, SemanticCrossEntropy, SpectralLoss
from dsc.ops import sample_pixels
from dsc.rounding import ConnectedComponents, Rounding
from dsc.training.module import DeepSpectralClustering


def make_module(embed_dim=4):
    return DeepSpectralClustering(
        backbone=SmallFCN(out_channels=embed_dim, width=4),
        loss=SpectralLoss(fused=False),
        rounding=Rounding(),
        optimizer=functools.partial(torch.optim.SGD, lr=0.1),
        embed_dim=embed_dim,
    )


def awkward_batch():
    """One all-void image and one image that is a single instance."""
    instances = torch.full((2, 12, 12), VOID)
    instances[1] = 1
    classes = instances.clone()
    return {"image": torch.rand(2, 3, 12, 12), "instances": instances, "classes": classes}


def test_forward_gives_unit_embeddings():
    embeddings = make_module()(torch.rand(2, 3, 10, 13)).embeddings
    assert embeddings.shape == (2, 4, 10, 13)
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(2, 10, 13))


def test_training_step_on_all_void_and_one_instance_images_is_finite():
    module = make_module()
    loss = module.training_step(awkward_batch(), 0)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in module.parameters() if p.grad is not None)


def test_validation_scores_awkward_batch_without_nan():
    module = make_module()
    module.validation_step(awkward_batch(), 0)
    scores = module.val_scores.compute()
    assert all(torch.isfinite(value) for value in scores.values())
    # Only the one-instance image has valid pixels: its pairs are all same-instance pairs.
    true_pos, false_pos, false_neg, true_neg = module.val_scores.counts[0].tolist()
    assert true_pos + false_neg == 144 * 143 // 2 and false_pos == true_neg == 0


def test_round_labels_every_pixel_per_image():
    module = make_module()
    labels = module.partition(module(torch.rand(3, 3, 8, 9)))
    assert labels.shape == (3, 8, 9) and labels.dtype == torch.int64 and (labels >= 0).all()


def test_non_finite_loss_names_the_step():
    module = make_module()
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="global step 0"):
        module.training_step(awkward_batch(), 0)


def test_unseen_classes_are_scored_apart():
    from dsc.metrics import PairwiseScores

    module = DeepSpectralClustering(
        backbone=SmallFCN(out_channels=4, width=4),
        loss=SpectralLoss(fused=False),
        rounding=Rounding(),
        optimizer=functools.partial(torch.optim.SGD, lr=0.1),
        embed_dim=4,
        unseen_classes=[2],
    )
    instances = torch.tensor([[[0, 0, 1, 1], [2, 2, 3, 3], [0, 4, 4, VOID]]])
    classes = torch.tensor([[[0, 0, 1, 1], [2, 2, 2, 2], [0, 1, 1, VOID]]])
    batch = {"image": torch.rand(1, 3, 3, 4), "instances": instances, "classes": classes}
    preds = module.validation_step(batch, 0)["preds"]
    expected_unseen, expected_seen = PairwiseScores(), PairwiseScores()
    expected_unseen.update(preds, instances.masked_fill((classes == 1), VOID))
    expected_seen.update(preds, instances.masked_fill((classes == 2), VOID))
    assert torch.equal(module.val_unseen.counts, expected_unseen.counts)
    assert torch.equal(module.val_seen.counts, expected_seen.counts)


@pytest.mark.parametrize(
    ("loss", "rounding", "embed_dim", "num_classes", "missing"),
    [
        (JointLoss(), Rounding(), 4, 0, "model.num_classes"),
        (SpectralLoss(), Rounding(semantic_blocking=True), 4, 0, "model.num_classes"),
        (SpectralLoss(), ConnectedComponents(), 4, 0, "model.num_classes"),
        (SemanticCrossEntropy(), Rounding(), 0, 3, "model.embed_dim"),
    ],
)
def test_heads_the_loss_and_rounding_need_are_checked(loss, rounding, embed_dim, num_classes, missing):
    with pytest.raises(ValueError, match=missing):
        DeepSpectralClustering(
            backbone=SmallFCN(out_channels=embed_dim + num_classes, width=4),
            loss=loss,
            rounding=rounding,
            optimizer=functools.partial(torch.optim.SGD, lr=0.1),
            embed_dim=embed_dim,
            num_classes=num_classes,
        )


def test_joint_model_splits_heads_and_scores_instances():
    module = DeepSpectralClustering(
        backbone=SmallFCN(out_channels=4 + 3, width=4),
        loss=JointLoss(fused=False),
        rounding=Rounding(semantic_blocking=True),
        optimizer=functools.partial(torch.optim.SGD, lr=0.1),
        embed_dim=4,
        num_classes=3,
    )
    outputs = module(torch.rand(2, 3, 12, 12))
    assert outputs.embeddings.shape == (2, 4, 12, 12) and outputs.class_logits.shape == (2, 3, 12, 12)
    batch = awkward_batch()
    batch["classes"] = batch["classes"].clamp(max=2).masked_fill(batch["instances"] == VOID, VOID)
    module.validation_step(batch, 0)
    scores = module.val_instances.compute()
    assert {"mask_ap", "pq", "agnostic/mask_ap", "agnostic/pq"} <= set(scores)
    assert all(torch.isfinite(value) for value in scores.values())


def with_trainer(module: DeepSpectralClustering, rank: int, batches_ready: int) -> DeepSpectralClustering:
    """The trainer attributes ``training_step`` reads: the rank, the step and Lightning's batch counter
    (``self.log`` is left out)."""
    progress = SimpleNamespace(total=SimpleNamespace(ready=batches_ready))
    module._trainer = SimpleNamespace(
        global_rank=rank,
        global_step=0,
        log_every_n_steps=1,
        fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress)),
    )
    module.log = lambda *args, **kwargs: None
    return module


def drawn_pixels(rank: int, batches_ready: int, seed: int = 0) -> torch.Tensor:
    module = with_trainer(make_module(), rank, batches_ready)
    module.seed = seed
    instances = torch.randint(0, 4, (2, 16, 16), generator=torch.Generator().manual_seed(0))
    return sample_pixels(instances, 64, generator=module.sample_generator(torch.device("cpu")))


def test_each_rank_and_batch_draws_its_own_pixels_and_a_resumed_run_the_same():
    first = drawn_pixels(rank=0, batches_ready=3)
    assert torch.equal(first, drawn_pixels(rank=0, batches_ready=3))  # the same after resuming
    assert not torch.equal(first, drawn_pixels(rank=1, batches_ready=3))
    assert not torch.equal(first, drawn_pixels(rank=0, batches_ready=4))
    assert not torch.equal(first, drawn_pixels(rank=0, batches_ready=3, seed=1))


def test_a_sampled_loss_draws_its_pixels_with_the_modules_generator():
    module = make_module()
    module.loss = SpectralLoss(sample_size=32, fused=False)
    batch = {
        "image": torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(1)),
        "instances": torch.randint(0, 3, (2, 12, 12), generator=torch.Generator().manual_seed(2)),
    }
    batch["classes"] = batch["instances"].clone()
    with torch.no_grad():
        losses = [float(with_trainer(module, rank, 5).training_step(batch, 0)) for rank in (0, 0, 1)]
        outputs = NetworkOutputs.split(module.raw_outputs(batch["image"]), module.embed_dim)
        expected = module.loss.training_loss(outputs, batch, module.sample_generator(torch.device("cpu")))
    assert losses[0] == losses[1] != losses[2]
    assert float(expected) == losses[2]  # the generator of the last call, rank 1


def validate_on_shapes(module):
    import pytorch_lightning as pl

    from dsc.data import InstanceDataModule, Shapes

    data = InstanceDataModule(Shapes(4, 24, seed=0), Shapes(6, 24, seed=1), batch_size=2, val_batch_size=3)
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.validate(module, datamodule=data, verbose=False)
    return trainer.callback_metrics


def test_a_collapsed_partition_is_flagged_with_its_likely_causes(caplog):
    module = make_module()
    with torch.no_grad():  # every pixel the same embedding: one segment per image
        module.backbone.head.weight.zero_()
        module.backbone.head.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
    metrics = validate_on_shapes(module)
    assert float(metrics["val/collapse/single_segment_fraction"]) == 1.0
    assert float(metrics["val/collapse/collapsed"]) == 1.0
    assert "the model has collapsed" in caplog.text and "model.optimizer.lr" in caplog.text


def test_a_partition_of_many_segments_is_not_flagged(caplog):
    module = make_module()

    def three_segments(outputs, generator=None, image_area=None):
        batch, _, height, width = outputs.embeddings.shape
        return torch.arange(height * width).view(1, height, width).expand(batch, -1, -1) % 3

    module.rounding.partition = three_segments
    metrics = validate_on_shapes(module)
    assert float(metrics["val/collapse/single_segment_fraction"]) < 0.9
    assert float(metrics["val/collapse/collapsed"]) == 0.0
    assert "collapsed" not in caplog.text
