"""dsc: deep spectral clustering for object instance segmentation (Barnes & Dubrawski).

Pure tensor functions live in ``dsc.losses``, ``dsc.rounding`` and ``dsc.metrics``; networks in
``dsc.backbones``; data in ``dsc.data``; the Lightning module in ``dsc.module``; entry points are
``python -m dsc.train``.
"""

__version__ = "0.1.0"
