"""Serving trained classifiers with Triton: model repositories (ONNX, TensorRT, Python backend), PyTriton serving,
a client that checks accuracy through the server, and load measurements. The command lines live in `triton/`.

Third-party serving packages are imported only where used: PyTriton by `pytriton_server`, tritonclient by `client`
and `loadgen` (the project's `[triton]` extra), matplotlib by `perf_plots`; writing a repository needs none of them.
"""
