"""The names under which validation logs its scores (``metrics.json``, loggers, the console tables):
one place for every module that writes or reads them. A prefix is completed by a score name
(``PAIRWISE + "fg_f1"`` is ``val/pairwise_fg_f1``)."""

VALIDATION = "val/"  # every validation score starts so
LOSS = "val/loss"
PAIRWISE = "val/pairwise_"  # the rounded partition against the instances: accuracy, …, fg_f1
SEMANTIC_ORACLE = "val/semantic_oracle/pairwise_"  # the true class map as a partition
CLASS_PARTITION = "val/class_partition/pairwise_"  # a class head's argmax against the class map
UNSEEN = "val/unseen/pairwise_"  # over background and the classes left out of training
SEEN = "val/seen/pairwise_"  # over background and the classes trained on
INSTANCES = "val/"  # mask AP and PQ of instances with classes: mask_ap, pq, …
AGNOSTIC_INSTANCES = "val/agnostic/"  # the same, every instance one class
ORACLE_CC = "val/semantic_oracle_cc/"  # the true class map split into connected components
ORACLE_CC_PAIRWISE = "val/semantic_oracle_cc/pairwise_"
ROUNDINGS = "val/roundings/"  # <name>/pairwise_fg_f1, <name>/agnostic/pq, …: roundings compared
COLLAPSE = "val/collapse/"  # single_segment_fraction, collapsed (1.0: the partition collapsed)
THEOREM22 = "val/theorem22/"  # network_loss, rounded_loss, ratio (the paper's Theorem 2.2)
FG = "fg_"  # PAIRWISE + FG + "f1": over foreground pairs
MONITOR = PAIRWISE + FG + "f1"  # what runs optimise and checkpoints monitor by default

UNDEFINED = "n/a"  # how tables show a score that is not defined (see ``is_undefined``)


def is_undefined(name: str, value: float | None) -> bool:
    """Whether a logged score is a convention rather than a measurement: mask AP is −1 where there is
    no true instance to find (COCOeval's convention), and a NaN is no score at all."""
    if value is None:
        return False
    return value != value or ("mask_ap" in name and value < 0)


def defined(name: str, value: float | None) -> float | None:
    """``value``, or None where it is undefined (``is_undefined``): what tables average."""
    return None if is_undefined(name, value) else value
