"""``DeepSpectralClustering``: the LightningModule that trains a network's heads (an embedding
with the spectral loss, class scores with cross-entropy, or both) and scores its rounded partitions
and instances (paper, Sections 2.2 and 2.3; the contracts are in ``dsc.contracts``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric

from dsc.contracts import (
    Batch,
    Head,
    InvalidInputError,
    NetworkOutputs,
    Objective,
    Partitioner,
    check_heads,
    heads_of,
)
from dsc.instances import Instances, InstanceThresholds, predicted_instances, true_instances
from dsc.labels import VOID
from dsc.losses import spectral_loss
from dsc.metrics import InstanceScores, PairwiseScores, keys, partition_loss
from dsc.rounding import connected_components, fill_void

log = logging.getLogger(__name__)
INSTANCE_METRICS = ("final", "every_epoch")


def non_finite_weights(state_dict: dict[str, Tensor]) -> list[str]:
    """The names of the floating-point tensors of ``state_dict`` that hold a NaN or an infinity, in
    order (one host synchronisation for all of them)."""
    weights = {name: tensor for name, tensor in state_dict.items() if tensor.is_floating_point()}
    if not weights:
        return []
    finite = torch.stack([tensor.isfinite().all() for tensor in weights.values()]).tolist()
    return [name for name, ok in zip(weights, finite, strict=True) if not ok]


COLLAPSED_FRACTION = 0.9  # of validation images rounded to one segment: the model has collapsed


class DeepSpectralClustering(pl.LightningModule):
    """Network → heads → loss; validation rounds, scores partitions and instances.

    backbone: any network (B, 3, H, W) → (B, d + C, H, W): ``embed_dim`` (d) embedding channels, unit-
        normalised per pixel, then ``num_classes`` (C) class scores (0 for none).
    loss: a ``dsc.contracts.Objective`` (``dsc.losses.SpectralLoss``, ``SemanticCrossEntropy``,
        ``JointLoss``); rounding: a ``dsc.contracts.Partitioner`` (``dsc.rounding.Rounding``,
        ``ClassArgmax``, ``ConnectedComponents``). Both are checked against the network's heads.
    instance_metrics: when validation also scores instances (``dsc.instances``) with mask AP and PQ,
        per class when there is a class head and class-agnostic always (``val/mask_ap``,
        ``val/agnostic/pq``, …), and the ground-truth class map through connected components
        (``val/semantic_oracle_cc/…``): ``final`` (the final scoring only; ``dsc.train``,
        ``dsc.evaluate`` and ``dsc.table1`` set ``score_instances``) or ``every_epoch``.
    optimizer / scheduler: partials taking the parameters / the optimizer (``scheduler`` optional).
    seed: seeds the rounding of every validation batch, so an image's partition depends neither on
        the epoch nor on the batch it is in, nor on how DDP splits the images; and, with the process
        rank and the batch's number in the run, the pixels a sampled loss draws on the device (each
        rank draws its own; a resumed run draws those an uninterrupted run would).
    unseen_classes: class ids left out of training (``data.exclude_classes``). Validation then also
        scores ``val/unseen/…`` over background and unseen-class pixels and ``val/seen/…`` over
        background and seen-class pixels (their ``fg_`` scores: over the objects alone).
    channels_last: run the backbone in channels-last memory format (faster convolutions on CPUs and
        GPUs; 0.67–0.74× the NCHW step time of the shapes recipes on 2 CPU cores, see
        ``benchmarks/shapes_step.py``).
    compile: ``torch.compile`` the backbone.
    init_from: a semantic checkpoint or state-dict file whose weights ``dsc.train`` copies into the
        backbone before training, all but its last layers (``dsc.training.init_from``); a model
        loaded from a checkpoint has that checkpoint's weights, and never reads this file.

    Built from the ``model`` config (``conf/model/default.yaml``: ``hydra.utils.instantiate``); what a
    checkpoint records besides the weights is ``dsc.training.checkpoint_record``'s.
    """

    def __init__(
        self,
        backbone: nn.Module,
        loss: Objective,
        rounding: Partitioner,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        embed_dim: int = 16,
        num_classes: int = 0,
        instance_metrics: str = "final",
        seed: int = 0,
        monitor: str = keys.MONITOR,
        unseen_classes: list[int] | None = None,
        channels_last: bool = True,
        compile: bool = False,
        init_from: str | None = None,
    ) -> None:
        super().__init__()
        self.init_from = init_from
        if embed_dim < 0 or num_classes < 0 or embed_dim + num_classes == 0:
            raise InvalidInputError(
                f"model.embed_dim={embed_dim} and model.num_classes={num_classes}: the network needs an "
                "embedding (embed_dim > 0), a class head (num_classes > 0) or both"
            )
        if num_classes == 1:
            raise InvalidInputError(
                "model.num_classes=1: a class head needs background and at least one class"
            )
        self.embed_dim, self.num_classes = embed_dim, num_classes
        self.heads: frozenset[Head] = heads_of(embed_dim, num_classes)
        check_heads(self.heads, loss.heads, f"the loss ({type(loss).__name__})")
        check_heads(self.heads, rounding.heads, f"the rounding ({type(rounding).__name__})")
        self.backbone = backbone
        self.channels_last = channels_last
        if channels_last:
            self.backbone.to(memory_format=torch.channels_last)
        if compile:
            self.backbone.compile()  # in place: parameter names and checkpoints stay the same
        self.loss = loss
        self.rounding = rounding
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.seed = seed
        self._sample_generators: dict[torch.device, torch.Generator] = {}
        self.monitor = monitor
        self.val_scores = PairwiseScores(ignore_index=VOID)
        self.val_semantic_oracle = PairwiseScores(ignore_index=VOID)
        # A semantic segmenter is also scored against the class partition (Table 1's "Semantic").
        self.val_class_partition = PairwiseScores(ignore_index=VOID)
        self.unseen_classes = torch.tensor(list(unseen_classes or []), dtype=torch.int64)
        self.val_unseen = PairwiseScores(ignore_index=VOID)
        self.val_seen = PairwiseScores(ignore_index=VOID)
        if instance_metrics not in INSTANCE_METRICS:
            raise InvalidInputError(
                f"model.instance_metrics must be one of {', '.join(INSTANCE_METRICS)}, "
                f"got {instance_metrics!r}"
            )
        self.score_instances = instance_metrics == "every_epoch"
        # What the instance scores count (dsc.evaluate's score_thresholded=true); default: everything.
        self.instance_thresholds = InstanceThresholds()
        self.val_instances = InstanceScores(num_classes)
        # The ground-truth class map, void filled from its neighbours, split by connected components.
        self.val_semantic_oracle_cc = PairwiseScores(ignore_index=VOID)
        self.val_semantic_oracle_cc_instances = InstanceScores(num_classes=VOID)  # any class id a thing
        # Theorem 2.2: the rounded partition's loss beside the network's, both squared Frobenius / n².
        self.val_loss = MeanMetric()
        self.val_single_segment = MeanMetric()  # the fraction of images rounded to one segment
        self.val_network_loss = MeanMetric()
        self.val_rounded_loss = MeanMetric()
        # Roundings scored beside the model's own, from the same outputs (compare_roundings).
        self.compared_roundings: dict[str, Partitioner] = {}
        self.val_compared = nn.ModuleDict()
        self.rounding_seconds: dict[str, float] = {}
        self._rounding_generator = torch.Generator()
        # The first optimizer step whose loss was not finite (−1: none yet) and that loss, kept on
        # the loss's device so that recording them costs no synchronisation (see check_finite).
        self.register_buffer("_nonfinite_step", torch.tensor(-1, dtype=torch.int64), persistent=False)
        self.register_buffer("_nonfinite_loss", torch.tensor(0.0), persistent=False)

    def forward(self, images: Tensor) -> NetworkOutputs:
        """images (B, 3, H, W) → the network's heads: ``.embeddings`` (B, d, H, W) unit pixel
        vectors and/or ``.class_logits`` (B, C, H, W)."""
        return NetworkOutputs.split(self.raw_outputs(images), self.embed_dim)

    def raw_outputs(self, images: Tensor) -> Tensor:
        """The backbone's outputs (B, d + C, H, W) before normalisation."""
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.backbone(images)

    def partition(
        self,
        outputs: NetworkOutputs,
        generator: torch.Generator | None = None,
        image_area: Tensor | None = None,
    ) -> Tensor:
        """The configured rounding of the outputs → segment labels (B, H, W); ``image_area`` (B, H, W),
        False on a batch's padding, leaves the padding out (label −1). ``generator``: the rounding's
        randomness (default: the module's, seeded per validation batch)."""
        generator = self._rounding_generator if generator is None else generator
        return self.rounding.partition(outputs.detach(), generator=generator, image_area=image_area)

    def compare_roundings(self, roundings: Mapping[str, Partitioner]) -> None:
        """Also score each of ``roundings`` in validation, from the network outputs the model's own
        rounding reads (the network runs once per image): ``val/roundings/<name>/pairwise_…`` and
        its instances' mask AP and PQ (``val/roundings/<name>/agnostic/pq``, …). Each must read
        heads the network has (``dsc.training.scoring.unreadable`` says why one cannot).
        ``rounding_seconds[name]``: the time each spent rounding."""
        for name, rounding in roundings.items():
            check_heads(self.heads, rounding.heads, f"the rounding {name} ({type(rounding).__name__})")
        self.compared_roundings = dict(roundings)
        self.val_compared = nn.ModuleDict(
            {
                name: nn.ModuleDict(
                    {
                        "pairwise": PairwiseScores(ignore_index=VOID),
                        "instances": InstanceScores(self.num_classes),
                    }
                )
                for name in roundings
            }
        ).to(self.device)
        self.rounding_seconds = dict.fromkeys(roundings, 0.0)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        # The loss takes the raw outputs: spectral losses normalise only what they need (fused on
        # GPUs); a sampled loss draws its pixels on the batch's device with this generator.
        outputs = NetworkOutputs.split(self.raw_outputs(batch["image"]), self.embed_dim)
        loss = self.loss.training_loss(outputs, batch, self.sample_generator(batch["instances"].device))
        self._remember_nonfinite(loss)
        # Read when the loss is logged anyway: reading it every step would wait for the GPU each step.
        if self._trainer is None or self.global_step % max(self._trainer.log_every_n_steps, 1) == 0:
            self.check_finite()
        # The mean over processes: with DDP, the loss of the whole batch.
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["image"]), sync_dist=True)
        return loss

    def sample_generator(self, device: torch.device) -> torch.Generator:
        """A generator on ``device`` seeded from (``seed``, process rank, number of batches trained
        before this one in the run): the loss's pixel samples depend on nothing else."""
        generator = self._sample_generators.get(device)
        if generator is None:
            generator = self._sample_generators[device] = torch.Generator(device)
        batch_number = 0
        if self._trainer is not None:  # Lightning counts a batch as ready before its training step
            batch_number = self._trainer.fit_loop.epoch_loop.batch_progress.total.ready - 1
        entropy = [self.seed, self.global_rank, batch_number]
        generator.manual_seed(int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> 1))
        return generator

    def _remember_nonfinite(self, loss: Tensor) -> None:
        first = ~torch.isfinite(loss.detach()) & (self._nonfinite_step < 0)
        self._nonfinite_step.copy_(torch.where(first, self.global_step, self._nonfinite_step))
        self._nonfinite_loss.copy_(torch.where(first, loss.detach().float(), self._nonfinite_loss))

    def check_finite(self) -> None:
        """Raise ``FloatingPointError`` if a training loss so far was NaN or infinite, naming the
        first such step (one host synchronisation)."""
        step = int(self._nonfinite_step)
        if step < 0:
            return
        learning_rate = ""
        if self._trainer is not None and self._trainer.optimizers:
            learning_rate = f" (now {self._trainer.optimizers[0].param_groups[0]['lr']:g})"
        raise FloatingPointError(
            f"training loss is {float(self._nonfinite_loss)} at global step {step} "
            f"(found at step {self.global_step}; checked every trainer.log_every_n_steps steps and "
            "before every checkpoint). No checkpoint was written after it: checkpoints/last.ckpt holds "
            "the last finite weights. The usual cause is a learning rate too high for the loss and "
            f"batch size: start a new run with a lower model.optimizer.lr{learning_rate}. If the loss "
            "turns non-finite at the same step whatever the rate, check the images of that step."
        )

    def validation_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        outputs = self(batch["image"])
        instances, image_area = batch["instances"], batch.get("image_area")
        # A metric, not a synced log call: validation ranks may run different numbers of batches.
        self.val_loss.update(self.loss.validation_loss(outputs, batch), len(instances))
        self.log(keys.LOSS, self.val_loss)
        self._rounding_generator.manual_seed(self.seed)
        preds = self.partition(outputs, image_area=image_area)
        self.val_scores.update(preds, instances)
        self.val_single_segment.update((preds.flatten(1).amax(dim=1) <= 0).float())
        # The ground-truth class map as a partition: what a perfect semantic segmenter scores.
        self.val_semantic_oracle.update(batch["classes"], instances)
        if outputs.class_logits is not None:  # the class head's partition against the class map
            self.val_class_partition.update(outputs.predicted_classes, batch["classes"])
        if len(self.unseen_classes):
            classes = batch["classes"]
            unseen = torch.isin(classes, self.unseen_classes.to(classes.device))
            seen = (classes != 0) & (classes != VOID) & ~unseen
            self.val_unseen.update(preds, instances.masked_fill(seen, VOID))
            self.val_seen.update(preds, instances.masked_fill(unseen, VOID))
        if outputs.raw_embeddings is not None:
            embeddings = outputs.embeddings
            images_with_pixels = (instances != VOID).flatten(1).any(dim=1).sum()
            with torch.autocast(embeddings.device.type, enabled=False):  # float32 also under bf16-mixed
                network_loss = spectral_loss(embeddings.float(), instances, VOID)
            self.val_network_loss.update(network_loss, images_with_pixels)
            self.val_rounded_loss.update(partition_loss(preds, instances, VOID), images_with_pixels)
        # The pictures' embedding panel: the embeddings, or the class probabilities without them.
        features = outputs.embeddings if outputs.raw_embeddings is not None else outputs.class_probabilities
        step_outputs = {"preds": preds, "embeddings": features}
        if self.score_instances or self.compared_roundings:
            void, targets = self._scored_pixels(batch)
        if self.score_instances:  # the scored instances also go to callbacks (dsc.outputs.coco)
            predicted = self._update_instance_metrics(batch, outputs, preds, void, targets)
            step_outputs |= {"instances": predicted, "true_instances": targets}
        if self.compared_roundings:
            self._update_compared(batch, outputs, void, targets)
        return step_outputs

    @staticmethod
    def _scored_pixels(batch: Batch) -> tuple[Tensor, list[Instances]]:
        """(B, H, W) bool: the pixels instance scores leave out (void, padding); the true instances."""
        void = batch["instances"] == VOID
        if batch.get("image_area") is not None:
            void |= ~batch["image_area"]
        return void, true_instances(batch["instances"], batch["classes"])

    def _predicted_instances(
        self, preds: Tensor, outputs: NetworkOutputs, void: Tensor, image_area: Tensor | None
    ) -> list[Instances]:
        """The instances of a partition that the instance scores count (``instance_thresholds``)."""
        predicted = predicted_instances(preds, outputs.detach(), valid=~void, image_area=image_area)
        if not self.instance_thresholds.keeps_all:
            predicted = [self.instance_thresholds.apply(image) for image in predicted]
        return predicted

    def _update_compared(
        self, batch: Batch, outputs: NetworkOutputs, void: Tensor, targets: list[Instances]
    ) -> None:
        """Round the batch's outputs with every compared rounding and score each (compare_roundings)."""
        instances, image_area = batch["instances"], batch.get("image_area")
        detached = outputs.detach()
        for name, rounding in self.compared_roundings.items():
            started = time.perf_counter()
            self._rounding_generator.manual_seed(self.seed)
            preds = rounding.partition(detached, generator=self._rounding_generator, image_area=image_area)
            self.rounding_seconds[name] += time.perf_counter() - started
            scores = self.val_compared[name]
            scores["pairwise"].update(preds, instances)
            scores["instances"].update(
                self._predicted_instances(preds, detached, void, image_area), targets, void
            )

    def _update_instance_metrics(
        self, batch: Batch, outputs: NetworkOutputs, preds: Tensor, void: Tensor, targets: list[Instances]
    ) -> list[Instances]:
        """Update the instance scores; return the batch's predicted instances."""
        instances, classes, image_area = batch["instances"], batch["classes"], batch.get("image_area")
        predicted = self._predicted_instances(preds, outputs, void, image_area)
        self.val_instances.update(predicted, targets, void)
        # The semantic oracle + connected components: void first takes its neighbours' class (else
        # VOC's void bands would separate touching instances for free).
        filled = fill_void(classes)
        components = connected_components(filled, image_area)
        self.val_semantic_oracle_cc.update(components, instances)
        oracle_ids = torch.where(~void & (filled != 0), components + 1, 0)
        oracle = true_instances(oracle_ids, filled, void=-1)
        self.val_semantic_oracle_cc_instances.update(oracle, targets, void)
        return predicted

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self._check_validation_pixels()
        self._check_collapse()
        metrics = [
            (keys.PAIRWISE, self.val_scores),
            (keys.SEMANTIC_ORACLE, self.val_semantic_oracle),
        ]
        if "classes" in self.heads:
            metrics.append((keys.CLASS_PARTITION, self.val_class_partition))
        if self.score_instances:
            metrics += [
                (keys.INSTANCES, self.val_instances),
                (keys.ORACLE_CC_PAIRWISE, self.val_semantic_oracle_cc),
                (keys.ORACLE_CC, self.val_semantic_oracle_cc_instances),
            ]
        if len(self.unseen_classes):
            metrics += [(keys.UNSEEN, self.val_unseen), (keys.SEEN, self.val_seen)]
        for name, scores in self.val_compared.items():
            metrics += [
                (f"{keys.ROUNDINGS}{name}/pairwise_", scores["pairwise"]),
                (f"{keys.ROUNDINGS}{name}/", scores["instances"]),
            ]
        for prefix, metric in metrics:
            for name, value in metric.compute().items():
                self.log(prefix + name, value.float(), prog_bar=prefix + name == self.monitor)
            metric.reset()
        if "embedding" in self.heads:
            network, rounded = self.val_network_loss.compute(), self.val_rounded_loss.compute()
            self.log_dict(
                {
                    keys.THEOREM22 + "network_loss": network,
                    keys.THEOREM22 + "rounded_loss": rounded,
                    # How much rounding costs; Theorem 2.2 bounds KwikCluster's by 6 in expectation.
                    keys.THEOREM22 + "ratio": rounded / network.clamp(min=1e-12),
                }
            )
            self.val_network_loss.reset()
            self.val_rounded_loss.reset()

    def _check_collapse(self) -> None:
        """Log the fraction of validation images rounded to a single segment and ``collapsed`` (1.0
        when it is at least ``COLLAPSED_FRACTION``), and warn then, naming the likely causes."""
        fraction = float(self.val_single_segment.compute())
        self.val_single_segment.reset()
        collapsed = fraction >= COLLAPSED_FRACTION
        self.log(keys.COLLAPSE + "single_segment_fraction", fraction)
        self.log(keys.COLLAPSE + "collapsed", float(collapsed))
        if collapsed and not self.trainer.sanity_checking:
            log.warning(
                "the rounded partition is a single segment in %.0f %% of the validation images (%s): "
                "the model has collapsed, every pixel alike, and its scores are those of one segment "
                "(marked val/collapse/collapsed=1 in metrics.json). Likely causes: a learning rate too "
                "high or too low for this loss and batch size (model.optimizer.lr), too few epochs "
                "(trainer.max_epochs), too small an embedding (model.embed_dim) or sample "
                "(loss.sample_size), a rounding threshold or bandwidth made for another loss, or "
                "labels without instances (check data.train)",
                100 * fraction,
                f"epoch {self.current_epoch}" if self.trainer.state.fn == "fit" else "final scoring",
            )

    def _check_validation_pixels(self) -> None:
        """Fail when no validation image had two valid pixels (all scores would be 0 by convention),
        and warn when the unseen classes had no object pixels in validation."""
        with self.val_semantic_oracle.sync_context():
            pairs = int(self.val_semantic_oracle.counts[0].sum())
        if pairs == 0:
            raise InvalidInputError(
                "the validation data have no valid pixels: every label is void (255) or each image has "
                "at most one labelled pixel, so no score is defined. Check data.val (its label files and "
                "their void value) or validate on other images"
            )
        if len(self.unseen_classes):
            with self.val_unseen.sync_context():
                unseen_pairs = int(self.val_unseen.counts[1].sum())
            if unseen_pairs == 0:
                log.warning(
                    "no validation image has object pixels of the unseen classes %s: "
                    "val/unseen/pairwise_fg_* are 0 by convention",
                    self.unseen_classes.tolist(),
                )

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer=optimizer)},
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Never a checkpoint of diverged weights: resuming from it could only fail. (What dsc adds
        # to a checkpoint besides the weights is dsc.training.checkpoint_record's.)
        self.check_finite()
        names = non_finite_weights(checkpoint["state_dict"])
        if names:
            raise FloatingPointError(
                f"the weights are not finite at global step {self.global_step} ({', '.join(names[:3])}"
                f"{', …' if len(names) > 3 else ''}): no checkpoint is written. Lower "
                "model.optimizer.lr in a new run, or resume from the last checkpoint with ckpt_path=last"
            )
