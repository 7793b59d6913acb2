"""Exports of trained models: AOTInductor packages (aoti.py); ONNX and TensorRT live beside it."""
