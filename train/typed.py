"""Plain data (a YAML document) to typed dataclasses, strictly.

`parse(value, tp, path)` checks `value` against the type annotation `tp` (a
dataclass, `int`, `float`, `bool`, `str`, `List[...]`, `Dict[str, ...]`,
`Optional`, `Union`, `Literal`, `Any`) and converts it: ints become floats
where a float is expected, nothing else is coerced (`true` is not 1, `"3"` is
not 3), unknown dataclass keys, missing required ones and non-finite numbers
are refused. Every refusal is a `ConfigError` whose one-line message names the
key path:

    optimizers.nero.learning_rate: expected a number, got 'fast'

(pydantic's strict mode checks the same types, but its errors are multi-line
reports in its own words; mapping them back to these one-line messages would
take a layer about as long as this module, and a new dependency.)
"""

import copy
import dataclasses
import math
import typing
from typing import Any, Dict, List, Literal, Union


class ConfigError(ValueError):
    """A config is invalid. The message is one line and names the key path."""


def describe(value):
    """A short one-line rendering of a value (for messages)."""
    if isinstance(value, str):
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "...'"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


def expected(tp):
    """What type `tp` accepts, in words."""
    origin = typing.get_origin(tp)
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if origin is Literal:
        return "one of " + ", ".join(
            str(a).lower() if isinstance(a, bool) else str(a)
            for a in typing.get_args(tp)
        )
    if origin in (list, List):
        return "a list"
    if origin in (dict, Dict) or dataclasses.is_dataclass(tp):
        return "a mapping"
    if origin is Union:
        return " or ".join(
            expected(a) for a in typing.get_args(tp) if a is not type(None)
        )
    return str(tp)


def fail(path, message):
    """Raise a ConfigError at key `path` (the whole config if empty)."""
    raise ConfigError(f"{path or '<config>'}: {message}")


def join(path, key):
    """The key path of `key` under `path`."""
    return f"{path}.{key}" if path else str(key)


def parse(value, tp, path):
    """`value` checked and converted to type `tp`, or a ConfigError at `path`."""
    if tp is Any:
        _check_finite(value, path)
        return copy.deepcopy(value)
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return parse_dataclass(value, tp, path)
    if origin is Union:
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # Optional[X]: X's own message says what is wrong inside
            return parse(value, options[0], path)
        for arg in args:
            if arg is type(None):
                continue
            try:
                return parse(value, arg, path)
            except ConfigError:
                pass
        fail(path, f"expected {expected(tp)}, got {describe(value)}")
    if origin is Literal:
        for choice in typing.get_args(tp):
            # true must not match 1, nor 1 match true.
            if type(value) is type(choice) and value == choice:
                return value
        fail(path, f"expected {expected(tp)}, got {describe(value)}")
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                fail(path, f"expected a finite number, got {describe(value)}")
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin in (list, List):
        if isinstance(value, list):
            (item,) = typing.get_args(tp)
            return [parse(v, item, join(path, i)) for i, v in enumerate(value)]
    elif origin in (dict, Dict):
        if isinstance(value, dict):
            _, item = typing.get_args(tp)
            out = {}
            for k, v in value.items():
                if not isinstance(k, str):
                    fail(path, f"keys must be strings, got {describe(k)}")
                out[k] = parse(v, item, join(path, k))
            return out
    else:  # pragma: no cover - a schema bug, not a user error
        raise TypeError(f"unsupported schema type {tp!r} at {path}")
    fail(path, f"expected {expected(tp)}, got {describe(value)}")


def _check_finite(value, path):
    """Free-form values (kwargs) may hold anything YAML does, but no NaN/inf."""
    if isinstance(value, float) and not math.isfinite(value):
        fail(path, f"expected a finite number, got {describe(value)}")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite(v, join(path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_finite(v, join(path, i))


def parse_dataclass(value, cls, path):
    """An instance of dataclass `cls` from a mapping (None: all defaults)."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        fail(path, f"expected a mapping, got {describe(value)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in value:
        if not isinstance(key, str) or key not in fields:
            valid = ", ".join(fields)
            fail(join(path, key), f"unknown key (valid keys: {valid})")
    kwargs = {}
    for name, field in fields.items():
        if name in value:
            kwargs[name] = parse(value[name], hints[name], join(path, name))
        elif (
            field.default is dataclasses.MISSING
            and field.default_factory is dataclasses.MISSING
        ):
            fail(join(path, name), "missing (required)")
    return cls(**kwargs)
