"""INT8 quantization with NVIDIA Model Optimizer (modelopt): calibration, QAT with the normal Trainer, checkpoints that
carry the quantizer state, and Q/DQ ONNX for TensorRT.

Upstream used pytorch-quantization, which is now a placeholder on PyPI (and its quant_main.py crashed as shipped);
modelopt is NVIDIA's maintained successor. It is optional: nothing here imports it until a quantized model is asked
for, and then a missing install is one line that says how to get it.

- backend: importing modelopt (quietly), the install hint
- modules: quantizers on the SE multiply and the residual add, which modelopt does not see by itself
- recipe: which quantizers are on (convolutions, linear layers, pooling, SE, residual; not BatchNorm), the methods
- calibrate: the calibration batches and the max / histogram (percentile) calibration
- state: the checkpoint record (modelopt state + how it was calibrated), restoring it, FP32 entry points' guard
- summary: the quantizer summary printed after calibration
- trainer: QuantTrainer, the Trainer whose checkpoints record the quantizer state
- options: the quantization flags of main.py's dialect (--quantize, --calib-method, --num-calib-batches, ...)
- workflow: what quant_main.py and launch.py --mode quantize run (their command line: cli/quantize.py)
"""
