"""Exports of trained models: ONNX (onnx.py), TensorRT engines (tensorrt.py) and AOTInductor packages (aoti.py),
all behind `python -m image_classification.export FORMAT` (exporters.py is the registry of formats)."""
