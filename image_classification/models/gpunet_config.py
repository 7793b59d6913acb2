"""GPUNet architecture descriptions: upstream's JSON layer lists, checked field by field, and this project's tables.

Two spellings describe one network:

- upstream's JSON format (``configs/batch1/GV100/<latency>.json``): a list of dicts, ``data`` first, then
  ``head``/``head_large``, then ``conv``/``irb``/``fused_irb`` blocks, then ``tail``;
- this project's compact tables (see ``gpunet_archs.py``), one row per layer.

Both are turned into one validated, normalised `NetSpec`, from which ``gpunet.GPUNet`` builds the network. Upstream's
builder checked almost nothing (unknown keys, typos and wrong types passed silently or crashed deep inside torch);
`load_upstream_config` reports every problem as one line naming the file, the entry and the key.
"""
from __future__ import annotations

import difflib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from common.cli_errors import UserError

ACTIVATIONS = ("relu", "swish")
STRIDES = (1, 2)

# Fields a layer may carry, per module family (the data entry's `distill` flag) and layer type: (required, optional).
# Optional fields that upstream ignores (`stage` on head and tail) are accepted and ignored here too.
_IO = ("num_in_channels", "num_out_channels")
_PLAIN_BLOCK = (*_IO, "kernel_size", "stride", "expansion", "act", "use_se", "stage")
_DISTILL_BLOCK = (*_IO, "kernel_size", "stride", "expansion", "groups", "stage")
FIELDS: dict[bool, dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    False: {
        "head": (_IO, ("act", "stage")),
        "conv": ((*_IO, "kernel_size", "stride", "act", "stage"), ()),
        "irb": (_PLAIN_BLOCK, ()),
        "fused_irb": (_PLAIN_BLOCK, ()),
        "tail": ((*_IO, "num_classes"), ("stage",)),
    },
    True: {
        "head": (_IO, ("stage",)),
        "head_large": (_IO, ("stage",)),
        "irb": (_DISTILL_BLOCK, ()),
        "fused_irb": (_DISTILL_BLOCK, ()),
        "tail": ((*_IO, "num_classes"), ("stage",)),
    },
}
DATA_FIELDS = ("img_resolution", "distill")
HEAD_TYPES = ("head", "head_large")
BLOCK_TYPES = ("conv", "irb", "fused_irb")
ALL_TYPES = ("data", "head", "head_large", "conv", "irb", "fused_irb", "tail")

# Upstream's 2.25ms-D.json spells one key "stage:" (in its tail). It is the only typo we forgive, as `stage`.
KNOWN_TYPO_KEYS = {"stage:": "stage"}


@dataclass(frozen=True)
class LayerSpec:
    """One layer of the network, normalised: `kind` is head, head_large, conv, irb, fused_irb or tail."""

    kind: str
    in_channels: int
    out_channels: int
    kernel_size: int = 1
    stride: int = 1
    expansion: float = 1
    act: str = "relu"
    use_se: bool = False
    groups: int = 1
    stage: int | None = None
    num_classes: int | None = None


@dataclass(frozen=True)
class NetSpec:
    """A whole GPUNet: input resolution, module family and layers (head, blocks..., tail; no data entry).

    Layer `i` sits at 0-based index ``i + 1`` of upstream's JSON list (the data entry is index 0); upstream's module
    names and its drop-path ramp are both derived from that index.
    """

    resolution: int
    distill: bool
    layers: tuple[LayerSpec, ...] = field(default_factory=tuple)

    @property
    def head(self) -> LayerSpec:
        return self.layers[0]

    @property
    def blocks(self) -> tuple[LayerSpec, ...]:
        return self.layers[1:-1]

    @property
    def tail(self) -> LayerSpec:
        return self.layers[-1]

    def json_index(self, layer_index: int) -> int:
        """0-based index in upstream's JSON list of `self.layers[layer_index]`."""
        return layer_index + 1

    def to_upstream(self) -> list[dict]:
        """This spec as upstream's JSON list (loadable by upstream's builder and by `load_upstream_config`)."""
        out: list[dict] = [{"layer_type": "data", "img_resolution": self.resolution, "distill": self.distill}]
        for layer in self.layers:
            entry: dict = {"layer_type": layer.kind, "num_in_channels": layer.in_channels,
                           "num_out_channels": layer.out_channels}
            if layer.kind in HEAD_TYPES:
                if not self.distill:
                    entry["act"] = layer.act
            elif layer.kind == "tail":
                entry["num_classes"] = layer.num_classes
            else:
                entry.update(stride=layer.stride, kernel_size=layer.kernel_size)
                if layer.kind != "conv":
                    entry["expansion"] = layer.expansion
                if self.distill:
                    entry["groups"] = layer.groups
                else:
                    entry["act"] = layer.act
                    if layer.kind != "conv":
                        entry["use_se"] = layer.use_se
                entry["stage"] = layer.stage
            out.append(entry)
        return out


# --- upstream JSON ---------------------------------------------------------------------------------------------


class _Checker:
    """Builds the one-line messages: '<source>: entry <i> (<layer_type>): <problem>; <what to do>'."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, problem: str, index: int | None = None, kind: str | None = None) -> UserError:
        where = "" if index is None else f" entry {index}" + (f" ({kind})" if kind else "") + ":"
        return UserError(f"{self.source}:{where} {problem}")


def _type_name(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), f"a {type(value).__name__}"
    )


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _read(path_or_list, source: str | None) -> tuple[object, str]:
    if isinstance(path_or_list, (str, os.PathLike)):
        path = Path(path_or_list)
        source = source or f"GPUNet config {path}"
        if not path.is_file():
            raise UserError(f"{source}: file not found; pass the path of an upstream GPUNet JSON config")
        try:
            return json.loads(path.read_text(encoding="utf-8")), source
        except UnicodeDecodeError:
            raise UserError(f"{source}: not a text file; pass an upstream GPUNet JSON config") from None
        except json.JSONDecodeError as exc:
            raise UserError(
                f"{source}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); fix the file"
            ) from None
    return path_or_list, source or "GPUNet config"


def load_upstream_config(path_or_list: str | os.PathLike | Sequence[dict], *, source: str | None = None) -> NetSpec:
    """Validate an upstream GPUNet architecture (a JSON file path, or the parsed list) and normalise it.

    Every problem is one `UserError` line naming the file, the entry index and the key.
    """
    config, source = _read(path_or_list, source)
    check = _Checker(source)
    if not isinstance(config, list):
        raise check.fail(f"expected a JSON list of layer entries, got {_type_name(config)}; "
                         "an upstream GPUNet config is a list starting with the data entry")
    if not config:
        raise check.fail("the layer list is empty; it must start with a data entry, then head, blocks and tail")

    entries = []
    for index, entry in enumerate(config):
        if not isinstance(entry, dict):
            raise check.fail(f"expected an object with a layer_type, got {_type_name(entry)}", index)
        if "layer_type" not in entry:
            raise check.fail("missing key 'layer_type'; add one of " + ", ".join(ALL_TYPES), index)
        kind = entry["layer_type"]
        if kind not in ALL_TYPES:
            close = difflib.get_close_matches(str(kind), ALL_TYPES, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise check.fail(f"unknown layer_type {kind!r}{hint}; use one of " + ", ".join(ALL_TYPES), index)
        entries.append(entry)

    if entries[0]["layer_type"] != "data":
        raise check.fail(f"the first entry must be the data entry (layer_type 'data'), got "
                         f"{entries[0]['layer_type']!r}; add a data entry with img_resolution and distill", 0)
    data = _fields(check, 0, entries[0], DATA_FIELDS, ())
    resolution, distill = data["img_resolution"], data["distill"]
    if not isinstance(distill, bool):
        raise check.fail(f"'distill' must be true or false, got {distill!r}", 0, "data")
    if not _is_int(resolution) or resolution < 1:
        raise check.fail(f"'img_resolution' must be a positive integer, got {resolution!r}", 0, "data")

    layers: list[LayerSpec] = []
    last = len(entries) - 1
    for index, entry in enumerate(entries[1:], start=1):
        kind = entry["layer_type"]
        family = FIELDS[distill]
        if kind not in family:
            other = "false" if distill else "true"
            if kind == "data":
                raise check.fail("a second data entry; keep exactly one, first in the list", index, kind)
            raise check.fail(f"layer_type {kind!r} needs distill {other}, but the data entry says "
                             f"{str(distill).lower()}; use one of " + ", ".join(family), index, kind)
        if index == 1 and kind not in HEAD_TYPES:
            raise check.fail(f"entry 1 must be the head (layer_type 'head'), got {kind!r}", index, kind)
        if index > 1 and kind in HEAD_TYPES:
            raise check.fail("a second head; keep exactly one, right after the data entry", index, kind)
        if kind == "tail" and index != last:
            raise check.fail("the tail must be the last entry", index, kind)
        if index == last and kind != "tail":
            raise check.fail(f"the last entry must be the tail (layer_type 'tail'), got {kind!r}", index, kind)
        values = _fields(check, index, entry, *family[kind])
        layer = _layer(check, index, kind, values, distill)
        if layers and layer.in_channels != layers[-1].out_channels:
            raise check.fail(f"'num_in_channels' is {layer.in_channels} but the previous entry's "
                             f"num_out_channels is {layers[-1].out_channels}; make them equal", index, kind)
        layers.append(layer)
    if not layers:
        raise check.fail("no layers after the data entry; add a head, blocks and a tail")
    return NetSpec(resolution=resolution, distill=distill, layers=tuple(layers))


def _fields(check: _Checker, index: int, entry: dict, required, optional) -> dict:
    kind = entry["layer_type"]
    values = {}
    for key, value in entry.items():
        if key == "layer_type":
            continue
        name = KNOWN_TYPO_KEYS.get(key, key)
        if name in values:
            raise check.fail(f"key {name!r} given twice (as {key!r} too); keep one", index, kind)
        if name not in required and name not in optional:
            allowed = sorted((*required, *optional))
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise check.fail(f"unknown key {key!r}{hint}; a {kind} entry takes " + ", ".join(allowed), index, kind)
        values[name] = value
    for key in required:
        if key not in values:
            raise check.fail(f"missing key {key!r}; a {kind} entry needs " + ", ".join(required), index, kind)
    return values


def _layer(check: _Checker, index: int, kind: str, v: dict, distill: bool) -> LayerSpec:
    def positive_int(key):
        value = v[key]
        if not _is_int(value) or value < 1:
            raise check.fail(f"{key!r} must be a positive integer, got {value!r}", index, kind)
        return value

    def boolean(key):
        if not isinstance(v[key], bool):
            raise check.fail(f"{key!r} must be true or false, got {v[key]!r}", index, kind)
        return v[key]

    def activation(key):
        if v[key] not in ACTIVATIONS:
            raise check.fail(f"unknown {key!r} {v[key]!r}; use one of " + ", ".join(ACTIVATIONS), index, kind)
        return v[key]

    in_ch, out_ch = positive_int("num_in_channels"), positive_int("num_out_channels")
    if kind in HEAD_TYPES:
        return LayerSpec(kind, in_ch, out_ch, kernel_size=3, stride=2,
                         act=activation("act") if "act" in v else ("relu" if distill else "swish"))
    if kind == "tail":
        return LayerSpec(kind, in_ch, out_ch, num_classes=positive_int("num_classes"))

    kernel = positive_int("kernel_size")
    stride = v["stride"]
    if not _is_int(stride) or stride not in STRIDES:
        raise check.fail(f"'stride' must be 1 or 2, got {stride!r}", index, kind)
    stage = v["stage"]
    if not _is_int(stage) or stage < 0:
        raise check.fail(f"'stage' must be a non-negative integer, got {stage!r}", index, kind)
    if kind == "conv":
        return LayerSpec(kind, in_ch, out_ch, kernel, stride, act=activation("act"), stage=stage)

    expansion = v["expansion"]
    if distill:
        # Upstream's distill blocks use in_channels * expansion channels, unrounded: it must be a whole number.
        if not _is_int(expansion) or expansion < 1:
            raise check.fail(f"'expansion' must be a positive integer in a distill config, got {expansion!r}",
                             index, kind)
        groups = positive_int("groups")
        if kind == "fused_irb" and groups != 1:
            # Upstream's Fused_IRB reads `groups` but always builds ungrouped convolutions.
            raise check.fail(f"'groups' must be 1 for a distill fused_irb (upstream ignores it), got {groups}",
                             index, kind)
        for what, channels in (("num_in_channels", in_ch), ("num_out_channels", out_ch)):
            if channels % groups:
                raise check.fail(f"{what} {channels} is not divisible by 'groups' {groups}; change one of them",
                                 index, kind)
        return LayerSpec(kind, in_ch, out_ch, kernel, stride, expansion, act="relu", groups=groups, stage=stage)
    if not _is_number(expansion) or expansion <= 0:
        raise check.fail(f"'expansion' must be a positive number, got {expansion!r}", index, kind)
    return LayerSpec(kind, in_ch, out_ch, kernel, stride, expansion, act=activation("act"),
                     use_se=boolean("use_se"), stage=stage)


# --- this project's tables ---------------------------------------------------------------------------------------

TABLE_COLUMNS = ("type", "out", "k", "s", "exp", "act", "se", "groups", "stage")


@dataclass(frozen=True)
class GPUNetArch:
    """A registered GPUNet: its names, preprocessing metadata and a layer table (see `parse_table`)."""

    name: str
    marketing_name: str
    latency_key: str
    ngc_id: str
    resolution: int
    crop_pct: float
    distill: bool
    table: str = field(repr=False)

    def rows(self) -> list[dict]:
        return parse_table(self.table)

    def to_upstream(self, num_classes: int = 1000) -> list[dict]:
        """This architecture in upstream's JSON format (e.g. to edit it and pass it back as model_config)."""
        out: list[dict] = [{"layer_type": "data", "img_resolution": self.resolution, "distill": self.distill}]
        in_ch = 3
        for row in self.rows():
            entry = {"layer_type": row["type"], "num_in_channels": in_ch, "num_out_channels": row["out"]}
            for column, key in (("k", "kernel_size"), ("s", "stride"), ("exp", "expansion"), ("act", "act"),
                                ("groups", "groups"), ("stage", "stage")):
                if row.get(column) is not None:
                    entry[key] = row[column]
            if row["type"] in ("irb", "fused_irb") and not self.distill:
                entry["use_se"] = bool(row.get("se"))
            if row["type"] == "tail":
                entry["num_classes"] = num_classes
            out.append(entry)
            in_ch = row["out"]
        return out

    def to_spec(self, num_classes: int = 1000) -> NetSpec:
        return load_upstream_config(self.to_upstream(num_classes), source=f"built-in architecture {self.name}")


def _cell(column: str, text: str):
    if text == "-":
        return None
    if column in ("type", "act"):
        return text
    if column == "se":
        if text != "se":
            raise ValueError(f"se column takes 'se' or '-', got {text!r}")
        return True
    if column == "exp":
        number = float(text)
        return int(number) if number.is_integer() and "." not in text else number
    return int(text)


def parse_table(text: str) -> list[dict]:
    """Rows of a layer table: a header line naming columns from TABLE_COLUMNS, then one whitespace-separated row
    per layer; '-' leaves a cell empty, '#' starts a comment. Input channels are implicit (the previous row's out,
    3 for the head). Programming errors in our own tables raise ValueError."""
    lines = [line.split("#", 1)[0].split() for line in text.strip().splitlines()]
    lines = [cells for cells in lines if cells]
    header, rows = lines[0], lines[1:]
    unknown = [c for c in header if c not in TABLE_COLUMNS]
    if unknown or "type" not in header or "out" not in header:
        raise ValueError(f"bad table header {header}")
    out = []
    for cells in rows:
        if len(cells) != len(header):
            raise ValueError(f"table row {cells} has {len(cells)} cells, header has {len(header)}")
        out.append({column: _cell(column, cell) for column, cell in zip(header, cells)})
    return out
