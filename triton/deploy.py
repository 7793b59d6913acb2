"""Write a Triton model repository entry for any registered model: export, config.pbtxt, labels.

    python triton/deploy.py --model efficientnet-b0 --weights model_best.pth.tar --repository model_repository \\
        --format onnx|tensorrt|python --precision fp16|fp32 --max-batch-size 64 --instances 2 \\
        [--preferred-batch-sizes 32 64] [--max-queue-delay-us 100] [--instance-kind gpu|cpu] [--force]

Formats: `onnx` (ONNX Runtime backend, dynamic batch, TensorRT execution accelerator on GPU instances), `tensorrt`
(a TensorRT plan built here: needs TensorRT and the GPU that will serve it) and `python` (Triton's Python backend
running the project's fast inference path; the project must be installed where tritonserver runs).
Unlike upstream's kit (ResNet50 only, model_navigator 0.1/0.2, no correctness check): every registered model, the
export checked against PyTorch, and nothing but PyTorch, onnx and (optionally) TensorRT needed.
"""
from __future__ import annotations

import sys
from importlib.util import find_spec
from pathlib import Path

# A checkout used without installing it: make the repository importable (only then: a folder named `triton` on
# sys.path must not get between PyTorch and OpenAI's triton package).
if find_spec("image_classification") is None:
    sys.path.append(str(Path(__file__).resolve().parents[1]))

from common.cli_errors import ArgumentParser, positive_int, run_cli  # noqa: E402
from image_classification.serving import model_config as mc  # noqa: E402
from image_classification.serving.repository import DEFAULT_OPSET, DeployOptions, deploy, describe  # noqa: E402


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="triton/deploy.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", "--arch", "-a", dest="arch", default=None, metavar="NAME",
                   help="registered model name (default: the architecture the checkpoint names)")
    p.add_argument("--weights", "--pretrained-from-file", dest="weights", default=None, metavar="PATH",
                   help="checkpoint: ours, upstream's, timm's, NGC's or a plain state dict")
    p.add_argument("--pretrained", action="store_true",
                   help="the published weights of --model from the torch hub cache (nothing is downloaded)")
    p.add_argument("--weights-kind", choices=("auto", "ema", "raw"), default="auto",
                   help="which weights of a training checkpoint: auto (EMA when present), ema or raw")
    p.add_argument("--repository", "--model-repository", dest="repository", required=True, metavar="DIR",
                   help="the Triton model repository to write <name>/ into")
    p.add_argument("--model-name", default=None, metavar="NAME",
                   help="the name Triton serves it under (default: the architecture, e.g. efficientnet-b0)")
    p.add_argument("--format", choices=mc.FORMATS, default="onnx", help="model format and backend (default: onnx)")
    p.add_argument("--precision", choices=tuple(mc.DATA_TYPES), default=None,
                   help="fp16 (default for GPU instances) or fp32 (default, and the only choice, for CPU instances)")
    p.add_argument("--instance-kind", choices=tuple(mc.KINDS), default="gpu",
                   help="where Triton runs the instances: gpu (KIND_GPU, default) or cpu (KIND_CPU)")
    p.add_argument("--max-batch-size", type=positive_int, default=64, metavar="N", help="default: 64")
    p.add_argument("--instances", type=positive_int, default=1, metavar="K",
                   help="model instances per GPU (or on the CPU); default: 1")
    p.add_argument("--preferred-batch-sizes", type=positive_int, nargs="+", default=[], metavar="N",
                   help="the dynamic batcher's preferred batch sizes (default: none, i.e. as large as possible)")
    p.add_argument("--max-queue-delay-us", type=int, default=100, metavar="US",
                   help="how long the dynamic batcher may hold a request to fill a batch (default: 100)")
    p.add_argument("--accelerator", choices=mc.ACCELERATORS, default="tensorrt",
                   help="onnx format: ONNX Runtime's TensorRT execution accelerator on GPU instances (default) or "
                        "none (CUDA provider; fp16 then exports a half-precision graph)")
    p.add_argument("--capture-cuda-graph", dest="cuda_graph", action="store_true",
                   help="tensorrt format: let Triton capture CUDA graphs (optimization { cuda { graphs: true } })")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, metavar="N",
                   help=f"ONNX opset (default: {DEFAULT_OPSET})")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip the onnxruntime check of the export against PyTorch")
    p.add_argument("--no-compile", dest="compile", action="store_false",
                   help="python format: skip torch.compile in the served fast path (starts faster, runs slower)")
    p.add_argument("--force", action="store_true",
                   help="write into a non-empty repository, replacing <repository>/<name>/ if it is there")
    return p


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    # An INT8-quantized checkpoint needs its quantizers restored, which is the quantization package's (above
    # serving); imported only for a checkpoint file, which needs torch anyway.
    restore_quantizers = None
    if args.weights is not None:
        from image_classification.quantization.state import restore_quantizers
    options = DeployOptions(
        repository=Path(args.repository), format=args.format, arch=args.arch, weights=args.weights,
        pretrained=args.pretrained, weights_kind=args.weights_kind, name=args.model_name, precision=args.precision,
        instance_kind=args.instance_kind, max_batch_size=args.max_batch_size, instances=args.instances,
        preferred_batch_sizes=tuple(args.preferred_batch_sizes), max_queue_delay_us=args.max_queue_delay_us,
        accelerator=args.accelerator, cuda_graph=args.cuda_graph, opset=args.opset, verify=args.verify,
        compile=args.compile, force=args.force,
        log=lambda line: print(line, flush=True), restore_quantizers=restore_quantizers,
    )
    result = deploy(options)
    print(f"=> wrote {describe(result)}", flush=True)
    repository = result.model_dir.parent.resolve()
    print(f"   serve it: docker run --rm --gpus all -p 8000:8000 -p 8001:8001 -p 8002:8002 -v {repository}:/models "
          f"nvcr.io/nvidia/tritonserver:25.06-py3 tritonserver --model-repository=/models", flush=True)


if __name__ == "__main__":
    run_cli(main)
