"""The fast inference path: BN folding, real half-precision weights, channels_last, torch.compile, CUDA graphs.

Used by classify.py, the benchmark, launch.py's benchmark_inference and Triton's Python backend:

    predictor = prepare_for_inference(model, device="cuda", precision="fp16", compile="default",
                                      cuda_graph=True, batch_size=1, image_size=320)
    logits = predictor(images)          # float32 NCHW images on any device -> float32 logits on `device`

BN folding (`fold_batchnorm`) finds every Conv2d -> BatchNorm2d pair from the model's *data flow* (a torch.fx trace:
the BN's input is the conv's output and nothing else reads that output), then rewrites those pairs in a deep copy
of the model's own module tree: the conv gets the folded weight and a bias, the BN becomes `nn.Identity`. The copy
keeps its class, methods, module names and `pretrained_cfg`, and accepts any batch size and resolution. A model
that torch.fx cannot trace falls back to a walk of its module tree: the (conv, bn) pairs each block class declares
(`conv_bn_pairs`, read through models.layers.declared_conv_bn_pairs), and consecutive conv/bn in any other
`nn.Sequential`.

The compile options and the on-disk compile cache are `image_classification/runtime/compile_options.py`'s.
"""
from __future__ import annotations

import copy
import os
import time
import warnings

import torch
import torch.nn as nn

from common.cli_errors import UserError
from image_classification.runtime.compile_options import (
    compile_with_options,
    configure_compile_cache,
    fast_compile_options,
)

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# "inductor": cuDNN/cuBLAS convolutions with Inductor's fused elementwise around them; "triton": the MBConv blocks run
# this project's fused Triton kernels (image_classification.kernels), the rest as with "inductor".
KERNELS = ("inductor", "triton")
FOLD_METHODS = ("auto", "fx", "modules")
# Modes whose inductor configuration already records CUDA graphs (they would fight a manual capture).
_CUDAGRAPH_COMPILE_MODES = ("reduce-overhead", "max-autotune")


# --- BatchNorm folding --------------------------------------------------------------------------------------------


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _pairs_from_modules(model: nn.Module) -> list[tuple[str, str]]:
    """(conv, bn) qualified names from the module tree: the pairs each block declares (`conv_bn_pairs`), and
    consecutive children of any other nn.Sequential."""
    # Imported on use: the models package imports every family (and timm), which fast.py's other users need not load.
    from image_classification.models.layers import declared_conv_bn_pairs

    pairs = []
    for prefix, module in model.named_modules():
        declared = declared_conv_bn_pairs(module)
        if declared:
            for conv_name, bn_name in declared:
                # A declared child may have been replaced since (a folded BN is an nn.Identity).
                if isinstance(getattr(module, conv_name, None), nn.Conv2d) and \
                        isinstance(getattr(module, bn_name, None), nn.BatchNorm2d):
                    pairs.append((_join(prefix, conv_name), _join(prefix, bn_name)))
        elif isinstance(module, nn.Sequential):
            children = list(module.named_children())
            for (conv_name, conv), (bn_name, bn) in zip(children, children[1:]):
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    pairs.append((_join(prefix, conv_name), _join(prefix, bn_name)))
    return pairs


def _pairs_from_fx(model: nn.Module) -> list[tuple[str, str]]:
    """(conv, bn) qualified names where the traced graph feeds a conv's output to a BN and to nothing else."""
    import torch.fx

    graph = torch.fx.symbolic_trace(model).graph
    modules = dict(model.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm2d) or not node.args:
            continue
        src = node.args[0]
        if (isinstance(src, torch.fx.Node) and src.op == "call_module"
                and isinstance(modules.get(src.target), nn.Conv2d) and len(src.users) == 1
                and len(node.args) == 1 and not node.kwargs
                and calls[src.target] == 1 and calls[node.target] == 1):  # a module called twice cannot be folded
            pairs.append((src.target, node.target))
    return pairs


def _foldable(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> bool:
    return (conv.out_channels == bn.num_features and bn.track_running_stats
            and bn.running_mean is not None and bn.running_var is not None)


@torch.no_grad()
def _fold_pair(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """conv(x) * s + t with s = gamma / sqrt(var + eps), t = beta - mean * s, computed in float64."""
    dtype = conv.weight.dtype
    # MPS has no float64; everywhere else, fold in double precision so the folded model loses nothing.
    work = torch.float32 if conv.weight.device.type == "mps" else torch.float64
    var, mean = bn.running_var.to(work), bn.running_mean.to(work)
    gamma = bn.weight.to(work) if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias.to(work) if bn.bias is not None else torch.zeros_like(var)
    scale = gamma * torch.rsqrt(var + bn.eps)
    weight = conv.weight.to(work) * scale.reshape(-1, *([1] * (conv.weight.dim() - 1)))
    bias = conv.bias.to(work) if conv.bias is not None else torch.zeros_like(mean)
    bias = (bias - mean) * scale + beta
    conv.weight.copy_(weight.to(dtype))
    if conv.bias is None:
        conv.bias = nn.Parameter(bias.to(dtype), requires_grad=conv.weight.requires_grad)
    else:
        conv.bias.copy_(bias.to(dtype))


def _set_submodule(root: nn.Module, qualname: str, module: nn.Module) -> None:
    parent_name, _, name = qualname.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, name, module)


def fold_batchnorm(model: nn.Module, *, strict: bool = True, method: str = "auto") -> nn.Module:
    """An eval-mode copy of `model` with every BatchNorm2d folded into the Conv2d that feeds it.

    The conv gets the folded weight and a bias, the BN is replaced by nn.Identity; `model` itself is not touched.
    `method`: "fx" finds the pairs from a torch.fx trace (data flow), "modules" from the module tree (the pairs
    blocks declare, and nn.Sequential neighbours), "auto" tries fx and falls back to the module walk when the model
    cannot be traced. A BatchNorm2d that follows no conv (or a conv whose output is also used elsewhere) cannot be
    folded: `strict` raises a UserError naming it, otherwise it stays in place (still correct, in eval mode).
    """
    if method not in FOLD_METHODS:
        raise ValueError(f"method must be one of {', '.join(FOLD_METHODS)}, got {method!r}")
    folded = copy.deepcopy(model).eval()
    if method == "modules":
        pairs = _pairs_from_modules(folded)
    else:
        try:
            pairs = _pairs_from_fx(folded)
        except Exception as exc:  # fx raises many types (TraceError, TypeError, NotImplementedError, ...)
            if method == "fx":
                raise UserError(f"torch.fx cannot trace {type(model).__name__} ({exc}); fold with method='modules'")\
                    from None
            pairs = _pairs_from_modules(folded)
    modules = dict(folded.named_modules())
    for conv_name, bn_name in pairs:
        conv, bn = modules[conv_name], modules[bn_name]
        if isinstance(bn, nn.BatchNorm2d) and _foldable(conv, bn):
            _fold_pair(conv, bn)
            _set_submodule(folded, bn_name, nn.Identity())
    left = [name for name, m in folded.named_modules() if isinstance(m, nn.BatchNorm2d)]
    if left and strict:
        shown = ", ".join(left[:4]) + (f", ... ({len(left) - 4} more)" if len(left) > 4 else "")
        raise UserError(f"cannot fold {len(left)} BatchNorm2d layer(s) of {type(model).__name__} that follow no "
                        f"convolution (or whose convolution output is used elsewhere): {shown}; "
                        "run without BN folding")
    return folded


# --- the predictor ------------------------------------------------------------------------------------------------


def _resolve_device(device: str | torch.device) -> torch.device:
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise UserError(f"unknown device {device!r}: {exc}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {device} asked for, but no CUDA device is available: use device cpu")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        elif device.index >= torch.cuda.device_count():
            raise UserError(f"device {device} asked for, but only {torch.cuda.device_count()} CUDA device(s) exist")
    return device


def _resolve_compile_mode(compile) -> str | None:
    if compile is None or compile is False:
        return None
    if compile is True:
        return "default"
    if not isinstance(compile, str):
        raise UserError(f"compile must be None/False (off), True or a torch.compile mode name, got {compile!r}")
    modes = list(torch._inductor.list_mode_options())
    if compile not in modes:
        raise UserError(f"unknown torch.compile mode {compile!r}; choose from {', '.join(modes)}")
    return compile


def _image_size(model: nn.Module, image_size: int | None) -> int | None:
    if image_size is not None:
        return int(image_size)
    size = getattr(model, "pretrained_cfg", {}).get("input_size")
    return int(size[-1]) if size else None


class Predictor:
    """`predictor(images) -> float32 logits` on `predictor.device`, from a prepared model.

    Images may be float tensors of shape (N, C, H, W) on any device, in any layout; they are moved to the device,
    cast to the model's precision and made channels_last as needed. With a CUDA graph, inputs of the captured shape
    replay the graph, and so do smaller batches of the same image shape (padded: rows are independent in eval mode,
    and a last, short batch would otherwise recompile); any other shape runs the (compiled or eager) model uncaptured,
    which is correct but slower (`graph_misses` counts those calls).
    """

    # evaluate() must not wrap a predictor in autocast: it casts itself, and a compiled model would recompile.
    handles_precision = True

    def __init__(self, model: nn.Module, *, device: torch.device, precision: str, channels_last: bool,
                 compile_mode: str | None, bn_folded: bool):
        self.model = model
        self.device = device
        self.precision = precision
        self.dtype = PRECISIONS[precision]
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.compile_mode = compile_mode
        self.compile_seconds: float | None = None
        self.setup_seconds: float | None = None
        self.bn_folded = bn_folded
        self.graph_shape: tuple[int, ...] | None = None
        self.graph_misses = 0
        self._graph: torch.cuda.CUDAGraph | None = None
        self._static_input: torch.Tensor | None = None
        self._static_output: torch.Tensor | None = None

    def eval(self) -> Predictor:
        """Already in eval mode (BN folded, weights frozen); here so code written for modules can call it."""
        return self

    @property
    def pretrained_cfg(self) -> dict:
        return getattr(self.model, "pretrained_cfg", {})

    @property
    def cuda_graph(self) -> bool:
        return self._graph is not None

    @staticmethod
    def check_input(images: torch.Tensor) -> None:
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"expected a torch.Tensor of images, got {type(images).__name__}")
        if images.dim() != 4:
            raise ValueError(f"expected images of shape (N, C, H, W), got shape {tuple(images.shape)}")
        if not images.is_floating_point():
            raise ValueError(f"expected normalised float images, got {images.dtype}")

    def prepare_input(self, images: torch.Tensor) -> torch.Tensor:
        """`images` on the model's device, in its dtype and memory format (a no-op when they already are)."""
        self.check_input(images)
        return images.to(self.device, self.dtype, non_blocking=True, memory_format=self.memory_format)

    def _forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.prepare_input(images)
        if self.compile_mode and self.compile_seconds is None:  # first call compiles: time it
            start = time.perf_counter()
            out = self.model(x)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.compile_seconds = time.perf_counter() - start
            return out
        return self.model(x)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            if self._graph is not None:
                n = images.shape[0] if images.dim() == 4 else -1
                if 0 < n <= self.graph_shape[0] and tuple(images.shape[1:]) == self.graph_shape[1:]:
                    self.check_input(images)
                    self._static_input[:n].copy_(images)  # casts, moves and re-lays out in one copy
                    self._graph.replay()
                    return self._static_output[:n].to(torch.float32, copy=True)
                self.graph_misses += 1
            return self._forward(images).float()

    def capture(self, batch_size: int, image_size: int, warmup: int = 3) -> None:
        """Capture one forward for a fixed (batch_size, 3, image_size, image_size) input in a CUDA graph."""
        if self.device.type != "cuda":
            raise UserError("CUDA graphs need a CUDA device")
        shape = (batch_size, 3, image_size, image_size)
        static_input = torch.zeros(shape, device=self.device, dtype=self.dtype).contiguous(
            memory_format=self.memory_format)
        with torch.inference_mode(), torch.cuda.device(self.device):
            # Warm up on a side stream (cuDNN autotuning, lazy init, compilation) so the capture sees steady state.
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(max(1, warmup)):
                    self._forward(static_input)
            torch.cuda.current_stream(self.device).wait_stream(side)
            torch.cuda.synchronize(self.device)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_output = self.model(static_input)
            torch.cuda.synchronize(self.device)
        self._graph, self._static_input, self._static_output = graph, static_input, static_output
        self.graph_shape = shape

    def __repr__(self) -> str:
        arch = self.pretrained_cfg.get("architecture", type(self.model).__name__)
        return (f"Predictor({arch}, device={self.device}, precision={self.precision}, "
                f"channels_last={self.memory_format is torch.channels_last}, bn_folded={self.bn_folded}, "
                f"compile={self.compile_mode}, cuda_graph={self.graph_shape})")


def _check_kernels(kernels: str, device: torch.device, precision: str, fold_bn: bool) -> None:
    if kernels not in KERNELS:
        raise UserError(f"kernels must be one of {', '.join(KERNELS)}, got {kernels!r}")
    if kernels != "triton":
        return
    from image_classification.kernels import unavailable_reason

    reason = unavailable_reason(device, PRECISIONS[precision])
    if reason is None and not fold_bn:
        reason = "they take BN-folded blocks, and BN folding is off"
    if reason is not None:
        raise UserError(f"the fused Triton kernels cannot be used: {reason}; use kernels 'inductor'")


def prepare_for_inference(
    model: nn.Module,
    *,
    device: str | torch.device,
    precision: str = "fp16",
    channels_last: bool = True,
    fold_bn: bool = True,
    compile: str | bool | None = None,
    compile_options: dict | None = None,
    cuda_graph: bool = False,
    batch_size: int | None = None,
    image_size: int | None = None,
    kernels: str = "inductor",
) -> Predictor:
    """A `Predictor` around an optimised eval-mode copy of `model` (`model` itself is not modified).

    - fold_bn: fold every BatchNorm2d into its conv (`fold_batchnorm`; a BN that cannot be folded stays, with a
      warning).
    - precision: fp16/bf16 convert the weights themselves (no autocast); fp16 needs CUDA, bf16 also runs on CPU.
    - channels_last: weights and inputs in NHWC.
    - compile: None/False (off), True ("default") or a torch.compile mode ("default", "max-autotune-no-cudagraphs",
      ...). With a known shape (batch_size or 1, image_size or the model's pretrained_cfg input size) the model is
      compiled here and `compile_seconds` records how long that took; otherwise the first call compiles (and is
      timed). Compiled kernels are cached on disk (see `configure_compile_cache`).
    - compile_options: TorchInductor settings on top of the mode's (e.g. {"freezing": True}); see
      `runtime.compile_options.FAST_COMPILE_OPTIONS` for the ones the fast path uses.
    - cuda_graph: capture one forward for (batch_size, 3, image_size, image_size) into a CUDA graph with a static
      input buffer; inputs of other shapes run uncaptured. Needs CUDA and batch_size; modes that record their own
      CUDA graphs ("reduce-overhead", "max-autotune") cannot be combined with it.
    - kernels: "inductor" (default) or "triton": the MBConv blocks run the fused Triton kernels
      (`image_classification.inference.fused_model`); needs BN folding, a CUDA device, fp16 or bf16 and Triton.
      `fused_blocks` on the predictor says how many blocks were swapped.
    On CUDA, cuDNN's autotuner (torch.backends.cudnn.benchmark) is switched on: the shapes of inference repeat.
    """
    if precision not in PRECISIONS:
        raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device = _resolve_device(device)
    _check_kernels(kernels, device, precision, fold_bn)
    mode = _resolve_compile_mode(compile)
    if device.type == "cpu" and precision == "fp16":
        raise UserError("fp16 inference needs a CUDA device (PyTorch's CPU kernels are slow or missing in fp16): "
                        "use precision fp32 (or bf16) on CPU")
    if cuda_graph:
        if device.type != "cuda":
            raise UserError(f"CUDA graphs need a CUDA device, not {device}: drop the CUDA graph option on CPU")
        if batch_size is None or batch_size < 1:
            raise UserError("a CUDA graph is captured for one input shape: give the batch size to capture")
        if mode in _CUDAGRAPH_COMPILE_MODES:
            raise UserError(f"torch.compile mode {mode!r} records its own CUDA graphs: combine the CUDA graph option "
                            "with mode 'default' or 'max-autotune-no-cudagraphs' instead")
    size = _image_size(model, image_size)
    if cuda_graph and size is None:
        raise UserError("a CUDA graph is captured for one input shape: give the image size to capture")

    if fold_bn:
        prepared = fold_batchnorm(model, strict=False)
        left = [name for name, m in prepared.named_modules() if isinstance(m, nn.BatchNorm2d)]
        if left:
            warnings.warn(f"{len(left)} BatchNorm2d layer(s) follow no convolution and stay unfolded: "
                          f"{', '.join(left[:4])}", stacklevel=2)
    else:
        prepared = copy.deepcopy(model).eval()
    for p in prepared.parameters():
        p.requires_grad_(False)
    prepared = prepared.to(device=device, dtype=PRECISIONS[precision])
    if channels_last:
        prepared = prepared.to(memory_format=torch.channels_last)
    fused = 0
    if kernels == "triton":
        from .fused_model import fuse_model

        fused = fuse_model(prepared)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    runner = prepared
    if mode is not None:
        configure_compile_cache()
        runner = compile_with_options(prepared, mode, compile_options)
    predictor = Predictor(runner, device=device, precision=precision, channels_last=channels_last,
                          compile_mode=mode, bn_folded=fold_bn)
    predictor.eager_model = prepared  # the uncompiled module, for inspection (same weights)
    predictor.kernels, predictor.fused_blocks = kernels, fused
    if mode is not None and size is not None:
        # Compile now, for the shape that will run, so the time shows up here and not in the first request.
        example = torch.zeros(batch_size or 1, 3, size, size)
        with torch.inference_mode():
            predictor._forward(predictor.prepare_input(example))
    if cuda_graph:
        predictor.capture(batch_size, size)
    return predictor


def fast_predictor(model: nn.Module, *, device: str | torch.device, precision: str, batch_size: int,
                   image_size: int, compile: bool = True, log=print, kernels: str = "inductor") -> Predictor:
    """The fast path as classify.py, launch.py's evaluate/benchmark_inference and Triton use it on a GPU: BN folded,
    weights in `precision`, channels_last, torch.compile with `fast_compile_options(batch_size)` (unless `compile` is
    False) and one CUDA graph for (batch_size, 3, image_size, image_size); smaller batches are padded into it.
    `kernels="triton"` runs the MBConv blocks on the fused Triton kernels (see `prepare_for_inference`).
    `log` gets one line saying what was built and how long compiling took (None: silent)."""
    start = time.perf_counter()
    predictor = prepare_for_inference(
        model, device=device, precision=precision, channels_last=True, fold_bn=True,
        compile="default" if compile else None, compile_options=fast_compile_options(batch_size) if compile else None,
        cuda_graph=True, batch_size=batch_size, image_size=image_size, kernels=kernels)
    predictor.setup_seconds = time.perf_counter() - start
    if log is not None:
        what = (f"compiled in {predictor.compile_seconds:.1f} s (cache: {os.environ.get('TORCHINDUCTOR_CACHE_DIR')})"
                if compile else "not compiled")
        fused = f", {predictor.fused_blocks} blocks on fused Triton kernels" if kernels == "triton" else ""
        log(f"=> fast inference path: BN folded, {precision}, channels_last{fused}, CUDA graph for batch {batch_size} "
            f"at {image_size} px, {what}; ready in {predictor.setup_seconds:.1f} s")
    return predictor
