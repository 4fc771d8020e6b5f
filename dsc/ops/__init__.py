"""Tensor primitives shared by the losses, metrics and rounding: grouping pixels by integer keys
(``grouping``: on CPUs with the compiled ``contingency.c``), unit normalisation over channels
(``normalize``), the spectral loss's pixel samples (``sampling``) and building dsc's C kernels for
the machine it runs on (``c_kernels``)."""

from dsc.ops.sampling import SAMPLINGS, sample_pixels

__all__ = ["SAMPLINGS", "sample_pixels"]
