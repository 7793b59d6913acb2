"""Read a config.pbtxt back for the tests: tritonclient's ModelConfig schema where it is installed (unknown fields
and wrong types fail there), else a small protobuf text-format reader (enough for what Triton configs hold).

Both give the same shape: messages as dicts, every field as a list of values (repeated or not), enums as names,
maps (`parameters`) as {key: value}.
"""
from __future__ import annotations

import re

_TOKEN = re.compile(r'\s*(?:(#[^\n]*)|("(?:[^"\\]|\\.)*")|([{}\[\]:,])|([^\s{}\[\]:,"]+))', re.S)
_MAPS = {"parameters"}


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            if text[pos:].strip():
                raise ValueError(f"cannot read config at {text[pos:pos + 30]!r}")
            break
        pos = match.end()
        if match.group(1) is None and match.group(0).strip():
            out.append(match.group(0).strip())
    return out


def _unquote(token: str) -> str:
    body = token[1:-1]
    data = bytearray()
    i = 0
    while i < len(body):
        char = body[i]
        if char != "\\":
            data += char.encode("utf-8")
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in "01234567":
            digits = re.match(r"[0-7]{1,3}", body[i + 1:]).group(0)
            data.append(int(digits, 8))
            i += 1 + len(digits)
        else:
            data += {"n": b"\n", "t": b"\t", '"': b'"', "\\": b"\\", "'": b"'"}[nxt]
            i += 2
    return data.decode("utf-8")


def _scalar(token: str):
    if token.startswith('"'):
        return _unquote(token)
    if token in ("true", "false"):
        return token == "true"
    try:
        return int(token)
    except ValueError:
        try:
            return float(token)
        except ValueError:
            return token  # an enum name


def _message(tokens: list[str], i: int, end: str | None) -> tuple[dict, int]:
    fields: dict = {}
    while i < len(tokens) and tokens[i] != end:
        name = tokens[i]
        i += 1
        if tokens[i] == ":":
            i += 1
        if tokens[i] == "{":
            value, i = _message(tokens, i + 1, "}")
            values = [value]
            i += 1
        elif tokens[i] == "[":
            i += 1
            values = []
            while tokens[i] != "]":
                if tokens[i] == ",":
                    i += 1
                    continue
                if tokens[i] == "{":
                    value, i = _message(tokens, i + 1, "}")
                    values.append(value)
                    i += 1
                else:
                    values.append(_scalar(tokens[i]))
                    i += 1
            i += 1
        else:
            values = [_scalar(tokens[i])]
            i += 1
        if name in _MAPS:
            target = fields.setdefault(name, {})
            for entry in values:
                target[entry["key"][0]] = entry["value"][0]
        else:
            fields.setdefault(name, []).extend(values)
    return fields, i


def parse_text(text: str) -> dict:
    fields, _ = _message(_tokens(text), 0, None)
    return fields


def _from_proto(message) -> dict:
    from google.protobuf.descriptor import FieldDescriptor

    out: dict = {}
    for fd, value in message.ListFields():
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            out[fd.name] = {k: (_from_proto(v) if hasattr(v, "ListFields") else v) for k, v in value.items()}
            continue
        # protobuf 6 has is_repeated (and deprecates label); older releases only label.
        repeated = fd.is_repeated if hasattr(fd, "is_repeated") else fd.label == FieldDescriptor.LABEL_REPEATED
        values = list(value) if repeated else [value]
        if fd.type == FieldDescriptor.TYPE_MESSAGE:
            values = [_from_proto(v) for v in values]
        elif fd.type == FieldDescriptor.TYPE_ENUM:
            values = [fd.enum_type.values_by_number[v].name for v in values]
        out[fd.name] = values
    return out


def schema_available() -> bool:
    try:
        import tritonclient.grpc.model_config_pb2  # noqa: F401
    except ImportError:
        return False
    return True


def parse_with_schema(text: str) -> dict:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return _from_proto(text_format.Parse(text, model_config_pb2.ModelConfig()))


def parse(text: str) -> dict:
    """The schema's reading where tritonclient is installed (and the two readers must agree), else ours."""
    ours = parse_text(text)
    if schema_available():
        theirs = parse_with_schema(text)
        assert theirs == ours, (theirs, ours)
    return ours
