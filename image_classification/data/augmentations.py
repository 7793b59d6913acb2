"""The augmentation registry: every policy `--augmentation` (timm's `--aa`) can name, and what each data backend
does for it.

A new policy is one entry in POLICIES: the pytorch backend's transform (augment_pytorch.py), the DALI backends'
pipeline step (augment_dali.py) and the nvJPEG backend's (pytorch-gpu, which has no policy stage), or NOT_SUPPORTED
where a backend cannot run it; that backend then answers with its one-line refusal, which names the backends that
can. The backends look policies up here and never branch on their names. The augmentations of whole batches that
the trainer runs on the device, after any backend, are in batch_augmentations.py.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from common.cli_errors import UserError

from . import augment_dali, augment_pytorch

NO_POLICY = "none"
NO_POLICY_SPELLINGS = (None, "", "none", "None")


class _NotSupported:
    def __repr__(self) -> str:
        return "NOT_SUPPORTED"


NOT_SUPPORTED = _NotSupported()


def nothing_to_add(name: str | None, **context) -> None:
    """What a backend does for the policy of no policy: its crops and flips alone."""
    return None


@dataclass(frozen=True)
class Backend:
    """A data backend as the policies see it: the field of `Policy` that says what it does, and its lines.

    `unknown` answers a name no policy has, `refusal` a policy the backend cannot run; both may use {name} (as the
    user spelled it), {choices} (the policies this backend runs) and {elsewhere} (the backends that run this one).
    """

    field: str
    flag: str  # the --data-backend a refusal elsewhere suggests for this backend
    unknown: str
    refusal: str


PYTORCH = Backend(
    "pytorch", "pytorch",
    unknown="unknown augmentation {name!r}; choose from: {choices}",
    refusal="augmentation {name!r} is not available on --data-backend pytorch; use --data-backend {elsewhere} for "
            "it, or one of: {choices}")
DALI = Backend(
    # dali-gpu, not dali-cpu: who leaves pytorch-gpu for a policy wants the decoding to stay on the GPU.
    "dali", "dali-gpu",
    unknown="unknown augmentation {name!r}; with DALI choose from: {choices}",
    refusal="augmentation {name!r} is not available with DALI; use --data-backend {elsewhere}, or one of: "
            "{choices}")
NVJPEG = Backend(
    "nvjpeg", "pytorch-gpu",
    unknown="unknown augmentation {name!r}; with --data-backend pytorch-gpu choose from: {choices}",
    refusal="augmentation {name!r} is not available on --data-backend pytorch-gpu; use --data-backend {elsewhere} "
            "for it")
BACKENDS = (PYTORCH, DALI, NVJPEG)


@dataclass(frozen=True)
class Policy:
    """One augmentation policy and, per backend, the function that builds its step from the policy's name, or
    NOT_SUPPORTED.

    pytorch: `(name, *, image_size, interpolation, fill) -> transform | None`, run on PIL images after the flips.
    dali: `(name) -> spec | None`; the spec's `apply(images, shape=, fill_value=)` runs inside the pipeline.
    nvjpeg: `(name) -> None`: the backend has no policy stage, so it runs only the policy of no policy.
    """

    name: str  # as --augmentation spells it; a name ending in "-" is a family that takes a timm spec after it
    spelling: str  # how a list of choices shows it
    # As timm: colour jitter only under no policy, since the policies alter colour themselves.
    alters_colour: bool
    pytorch: Callable | _NotSupported
    dali: Callable | _NotSupported
    nvjpeg: Callable | _NotSupported

    def matches(self, name: str) -> bool:
        return name == self.name or (self.name.endswith("-") and name.startswith(self.name))

    def runs_on(self, backend: Backend) -> bool:
        return getattr(self, backend.field) is not NOT_SUPPORTED

    def step(self, backend: Backend, name: str | None, **context):
        """`backend`'s step for this policy (None when it adds nothing), built for `name` as the user spelled it;
        the backend's one-line refusal when it cannot run the policy."""
        build = getattr(self, backend.field)
        if build is NOT_SUPPORTED:
            elsewhere = " or ".join(b.flag for b in BACKENDS if b is not backend and self.runs_on(b))
            raise UserError(backend.refusal.format(name=name, choices=choices(backend), elsewhere=elsewhere))
        return build(name, **context)


POLICIES = (
    Policy(NO_POLICY, NO_POLICY, alters_colour=False,
           pytorch=nothing_to_add, dali=nothing_to_add, nvjpeg=nothing_to_add),
    Policy("autoaugment", "autoaugment", alters_colour=True,
           pytorch=augment_pytorch.torchvision_autoaugment, dali=augment_dali.dali_autoaugment,
           nvjpeg=NOT_SUPPORTED),
    Policy("randaugment", "randaugment", alters_colour=True,
           pytorch=augment_pytorch.torchvision_randaugment, dali=augment_dali.torchvision_randaugment,
           nvjpeg=NOT_SUPPORTED),
    Policy("rand-", "rand-<timm spec> (e.g. rand-m9-mstd0.5)", alters_colour=True,
           pytorch=augment_pytorch.timm_rand_augment, dali=augment_dali.timm_rand_augment, nvjpeg=NOT_SUPPORTED),
    Policy("augmix-", "augmix-<timm spec>", alters_colour=True,
           pytorch=augment_pytorch.timm_augmix, dali=NOT_SUPPORTED, nvjpeg=NOT_SUPPORTED),
)


def policy_names() -> str:
    """Every policy's spelling, for the command lines' --augmentation (timm's --aa) help."""
    return " | ".join(p.spelling for p in POLICIES)


def choices(backend: Backend) -> str:
    return ", ".join(p.spelling for p in POLICIES if p.runs_on(backend))


def lookup(name: str | None, backend: Backend) -> Policy:
    """The policy `name` names (None, "" and "None" name the policy of no policy); `backend`'s one line when none
    does."""
    wanted = NO_POLICY if name in NO_POLICY_SPELLINGS else name
    for policy in POLICIES:
        if policy.matches(wanted):
            return policy
    raise UserError(backend.unknown.format(name=name, choices=choices(backend), elsewhere=""))


def build(name: str | None, backend: Backend, **context):
    """`backend`'s step for the policy `name` (None when it adds nothing), or the backend's one-line error."""
    return lookup(name, backend).step(backend, name, **context)
