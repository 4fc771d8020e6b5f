"""Tensor primitives shared by the losses, metrics and rounding: grouping pixels by integer keys
(``grouping``) and unit normalisation over channels (``normalize``)."""
