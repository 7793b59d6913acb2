"""The model of Triton's Python backend for `deploy.py --format python`: the project's fast inference path.

The repository's `<model>/1/model.py` only imports `TritonPythonModel` from here, so the project must be installed
in the Python environment that Triton's python backend runs (`pip install` it into the tritonserver image, as
docker/Dockerfile.triton does). The configuration's parameters name the weights (beside model.py), the precision
and whether to compile; the instance group says where each instance runs (KIND_GPU: its GPU, KIND_CPU: the CPU).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .model_config import INPUT_NAME, OUTPUT_NAME

CHECKPOINT_PARAMETER = "checkpoint"
PRECISION_PARAMETER = "precision"
COMPILE_PARAMETER = "compile"


def string_parameters(config: dict) -> dict[str, str]:
    return {key: value.get("string_value", "") for key, value in (config.get("parameters") or {}).items()}


def instance_device(kind: str, device_id) -> str:
    """Triton's instance kind ("GPU", "CPU", "MODEL") and device id -> a torch device."""
    return f"cuda:{int(device_id)}" if str(kind).upper() == "GPU" else "cpu"


class TritonPythonModel:
    """Triton calls initialize(args) once per instance, execute(requests) per batch, finalize() at unload."""

    def initialize(self, args: dict) -> None:
        from image_classification.serving.inference import load_serving_model

        config = json.loads(args["model_config"])
        params = string_parameters(config)
        folder = Path(args["model_repository"]) / str(args["model_version"])
        device = instance_device(args.get("model_instance_kind", "CPU"), args.get("model_instance_device_id", 0))
        precision = params.get(PRECISION_PARAMETER) or None
        if device == "cpu":
            precision = "fp32"  # a configuration written for GPUs may still run CPU instances
        self.model = load_serving_model(
            folder / params.get(CHECKPOINT_PARAMETER, "model.pth.tar"), device=device, precision=precision,
            max_batch_size=max(1, int(config.get("max_batch_size") or 1)),
            compile=params.get(COMPILE_PARAMETER, "true").lower() == "true",
        )

    def execute(self, requests):
        import triton_python_backend_utils as pb_utils

        # The dynamic batcher hands over several requests: one forward for all of them, then split the result.
        try:
            arrays = [pb_utils.get_input_tensor_by_name(r, INPUT_NAME).as_numpy() for r in requests]
            logits = self.model(np.concatenate(arrays).astype(np.float32, copy=False))
        except Exception as exc:  # the error goes back to the clients instead of killing the instance
            error = pb_utils.TritonError(f"{type(exc).__name__}: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        responses, start = [], 0
        for array in arrays:
            end = start + len(array)
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(OUTPUT_NAME,
                                                                                        logits[start:end])]))
            start = end
        return responses

    def finalize(self) -> None:
        self.model = None
