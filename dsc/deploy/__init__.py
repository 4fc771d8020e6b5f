"""Deploying without the training stack: ONNX export (``onnx_export``) and the onnxruntime runner
(``onnx_runtime``)."""

from dsc.deploy.onnx_export import DeployedNetwork, export_onnx, output_names
from dsc.deploy.onnx_runtime import OnnxNetwork

__all__ = ["DeployedNetwork", "OnnxNetwork", "export_onnx", "output_names"]
