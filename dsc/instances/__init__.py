"""Instances from partitions: masks with a class and a score per image (``from_partitions``), and
panoptic maps of them (``panoptic``), and the thresholds of what a command writes (``thresholds``)."""

from dsc.instances.from_partitions import predicted_instances, true_instances
from dsc.instances.instances import OBJECT, Instances, no_instances
from dsc.instances.panoptic import panoptic_maps
from dsc.instances.thresholds import DroppedInstances, InstanceThresholds

__all__ = [
    "OBJECT",
    "DroppedInstances",
    "InstanceThresholds",
    "Instances",
    "no_instances",
    "panoptic_maps",
    "predicted_instances",
    "true_instances",
]
