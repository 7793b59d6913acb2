"""Our models in timm's registry as `nvidia_<name>` (nvidia_efficientnet_b0, nvidia_gpunet_0, ...).

After `import image_classification.models`, timm's own tools take our models by name:
`timm.create_model("nvidia_gpunet_0", num_classes=10)`, `timm.data.resolve_data_config({}, model=m)`, and timm's
train.py / validate.py / benchmark.py with `--model nvidia_gpunet_0`. Each name carries a timm `pretrained_cfg` built
from our registry's metadata (input size, crop_pct, interpolation, mean/std, first conv and classifier module names,
the NGC weights URL).

Weights are never fetched: `pretrained=True` reads the published file from the torch hub cache through our own
loader (`create_model(pretrained=True)`, which says what to fetch when it is missing), or the file that timm's
`--pretrained-path` puts in `pretrained_cfg_overlay`. timm's loader would download the URL, and the NGC files are
zips in upstream's key layout that only our loader reads.

timm is optional: without it nothing is registered. Importing timm costs seconds (it brings torchvision) that most
of our CLIs never need, so it is not imported here: if timm is already loaded the models are registered at once,
otherwise the moment `timm.models` finishes loading (a one-shot import hook). Either way, any code that can reach
timm's registry finds our models. Registering is idempotent: a name already registered by this module is left as it
is, so importing (or reloading) twice neither raises nor warns.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import sys

from common.cli_errors import UserError

from .factory import create_model
from .registry import ModelInfo, get_model_info, list_models

TIMM_PREFIX = "nvidia_"
PAPERS = {"efficientnet": "arXiv:1905.11946", "gpunet": "arXiv:2205.00841"}
# timm's global_pool spellings for the average pooling our heads have ("fast" is timm's flatten-mean variant).
AVERAGE_POOLS = {"avg", "fast"}


def timm_name(name: str) -> str:
    return TIMM_PREFIX + name.replace("-", "_")


def registered_models() -> list[ModelInfo]:
    # INT8 variants (efficientnet-quant-*) are left out: their quantizers come from quant_main.py, which timm's
    # scripts do not run, so under timm they would only be FP32 copies of efficientnet-bN.
    return [info for info in map(get_model_info, list_models()) if not info.quantized]


def module_names(info: ModelInfo) -> tuple[str, str]:
    """(first conv, classifier) module names, as timm's pretrained_cfg spells them."""
    if info.family == "gpunet":
        from .gpunet import _registered_spec

        first = "stem.conv1" if _registered_spec(info.name).head.kind == "head_large" else "stem.conv"
        return first, "head.fc"
    return "stem.conv", "classifier.fc"


def pretrained_cfg(info: ModelInfo) -> dict:
    first_conv, classifier = module_names(info)
    cfg = dict(
        input_size=(3, info.input_size, info.input_size),
        crop_pct=info.crop_pct,
        interpolation=info.interpolation,
        mean=info.mean,
        std=info.std,
        num_classes=1000,
        first_conv=first_conv,
        classifier=classifier,
        paper_ids=PAPERS.get(info.family),
        origin_url="https://github.com/NVIDIA/DeepLearningExamples",
    )
    if info.weights_url:
        cfg["url"] = info.weights_url
        cached = info.weights_file or info.weights_url.rsplit("/", 1)[-1]
        cfg["notes"] = (f"not downloaded: pretrained=True reads {cached} from the torch hub cache (checkpoints/)",)
    return cfg


def timm_kwargs_to_ours(info: ModelInfo, kwargs: dict) -> dict:
    """timm's create_model keywords (train.py passes in_chans, drop_rate, drop_path_rate, drop_block_rate,
    global_pool, bn_momentum, bn_eps) -> our builder's; what our models cannot honour is one clear error, never
    silently ignored (upstream's GPUNet factories dropped them)."""
    ours = dict(kwargs)
    # timm passes a folder's config.json model_args twice: merged into the keywords and as this one.
    ours.pop("pretrained_model_args", None)
    timm_name_ = timm_name(info.name)
    in_chans = ours.pop("in_chans", 3)
    if in_chans != 3:
        raise UserError(f"{timm_name_} takes RGB input (in_chans 3), got in_chans {in_chans}")
    pool = ours.pop("global_pool", "avg")
    if pool not in AVERAGE_POOLS:
        raise UserError(f"{timm_name_} always pools by averaging: drop global_pool {pool!r} (--gp)")
    if ours.pop("drop_block_rate", 0.0):
        raise UserError(f"{timm_name_} has no DropBlock: drop drop_block_rate (--drop-block)")
    for unsupported in ("features_only", "out_indices"):
        if ours.pop(unsupported, None) is not None:
            raise UserError(f"{timm_name_} does not build feature-extraction variants ({unsupported}); use "
                            f"forward_features or extract_features on the model instead")
    if "drop_rate" in ours:
        ours["dropout"] = ours.pop("drop_rate")
    if info.family == "efficientnet":
        if "drop_path_rate" in ours:
            # Our EfficientNet takes the survival probability at the end of the same linear ramp.
            ours["survival_prob"] = 1.0 - ours.pop("drop_path_rate")
        if "bn_eps" in ours:
            ours["bn_epsilon"] = ours.pop("bn_eps")
    else:
        for bn in ("bn_momentum", "bn_eps"):
            if bn in ours:
                raise UserError(f"{timm_name_}'s BatchNorm settings are fixed by its architecture: drop {bn} "
                                f"(--{bn.replace('_', '-')})")
    return ours


def make_entrypoint(info: ModelInfo):
    name = timm_name(info.name)

    def entrypoint(pretrained: bool = False, pretrained_cfg=None, pretrained_cfg_overlay=None, cache_dir=None,
                   num_classes: int | None = None, **kwargs):
        # cache_dir is accepted because timm's create_model always passes it; nothing is downloaded to use it.
        from timm.models import resolve_pretrained_cfg

        cfg = resolve_pretrained_cfg(name, pretrained_cfg=pretrained_cfg, pretrained_cfg_overlay=pretrained_cfg_overlay)
        if num_classes is None:  # a local-dir: / Hub folder's config.json says how many classes its weights have
            num_classes = cfg.num_classes if pretrained and cfg.num_classes else 1000
        # timm's --pretrained-path names a file in the overlay; otherwise the published weights, from the cache only.
        # fresh_classifier: like timm, another class count keeps the backbone and starts a new head.
        weights = (cfg.file or True) if pretrained else None
        model = create_model(info.name, pretrained=weights, num_classes=num_classes, fresh_classifier=True,
                             **timm_kwargs_to_ours(info, kwargs))
        # timm's scripts read pretrained_cfg (resolve_data_config) and num_classes; num_classes in the cfg is the
        # model's, as in our own pretrained_cfg. No legacy `default_cfg` alias on purpose: with one, timm's
        # validate.py swaps in TestTimePoolHead at sizes above the default, which needs a pool_size and a
        # forward_features that stops right before pooling; our heads pool adaptively at any size by themselves.
        model.pretrained_cfg = cfg.to_dict() | {"num_classes": num_classes} | getattr(model, "metadata_overrides", {})
        model.num_classes = num_classes
        return model

    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = f"{info.name} ({info.family}) from image_classification, for timm.create_model."
    return entrypoint


def register_all() -> list[str]:
    """Register every model with timm (a no-op without timm); returns the timm names."""
    try:
        from timm.models import generate_default_cfgs, is_model, model_entrypoint, register_model
    except ImportError:
        return []
    module = sys.modules[__name__]
    infos = registered_models()
    # timm's register_model reads the entrypoint module's `default_cfgs`, as for its own model files.
    module.default_cfgs = generate_default_cfgs({timm_name(i.name): pretrained_cfg(i) for i in infos})
    names = []
    for info in infos:
        name = timm_name(info.name)
        names.append(name)
        if is_model(name) and model_entrypoint(name).__module__ == __name__:
            continue  # registered by an earlier import or a reload of this module
        entrypoint = make_entrypoint(info)
        setattr(module, name, entrypoint)  # timm lists the name in our __all__; make it importable too
        register_model(entrypoint)
    return names


class _RegisterAfterTimm(importlib.abc.MetaPathFinder):
    """Finds nothing itself: when `timm.models` is about to load, it lets the other finders find it and makes its
    loader call register_all() once timm's own models are in."""

    registers_our_models = True  # how a reload of this module recognises a hook installed before it

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "timm.models":
            return None
        sys.meta_path.remove(self)  # one shot, and the search below must not come back here
        for finder in sys.meta_path:
            spec = finder.find_spec(fullname, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None:
                break
        else:
            return None
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            register_all()

        spec.loader.exec_module = exec_module
        return spec


def register_with_timm() -> None:
    """Register now if timm is loaded; else when it loads; never if it is not installed."""
    if "timm.models" in sys.modules:
        register_all()
    elif importlib.util.find_spec("timm") is not None and not any(
        getattr(finder, "registers_our_models", False) for finder in sys.meta_path
    ):
        sys.meta_path.insert(0, _RegisterAfterTimm())


register_with_timm()
