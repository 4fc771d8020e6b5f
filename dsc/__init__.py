"""dsc: deep spectral clustering for object instance segmentation (Barnes & Dubrawski).

Pure tensor functions live in ``dsc.losses``, ``dsc.rounding`` and ``dsc.metrics``; networks in
``dsc.backbones``; data in ``dsc.data``; the Lightning module in ``dsc.training.module``; entry points are
``python -m dsc.train``.

Importing dsc before torch allocates anything turns on PyTorch's transparent-huge-page allocations
for large CPU tensors (``THP_MEM_ALLOC_ENABLE=1``): a fresh 350 MB gradient then costs a fraction
of its page faults (docs/benchmarks.md). Set ``THP_MEM_ALLOC_ENABLE=0`` to keep torch's default.
"""

import os

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

__version__ = "0.1.0"
