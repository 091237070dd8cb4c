"""Setting values as people and services write them: JSON files, ``key=value`` pairs and flags,
converted to the type of each setting's default with errors that name the key. ``Params``
(``config.py``) validates what comes out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import tensorflow as tf


class ParamsError(ValueError):
    """A setting is unknown, of the wrong type or impossible; the message names the key."""


def read_settings_file(path: str) -> dict[str, Any]:
    """The JSON object of settings in ``path`` (local or gfile), not yet converted or validated."""
    if not tf.io.gfile.exists(path):
        raise ParamsError(f"Config file {path} does not exist")
    with tf.io.gfile.GFile(path, "r") as f:
        return settings_from_json(f.read(), source=path)


def settings_from_json(text: str, source: str) -> dict[str, Any]:
    try:
        values = json.loads(text)
    except json.JSONDecodeError as error:
        raise ParamsError(f"{source} is not valid JSON: {error}") from None
    if not isinstance(values, dict):
        raise ParamsError(f"{source} must hold a JSON object of settings")
    return values


def parse_key_values(pairs: Iterable[str]) -> dict[str, str]:
    """``["key=value", ...]`` -> {key: value}; the values stay strings until Params converts
    them."""
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ParamsError(f"Expected key=value, got {pair!r}")
        overrides[key.strip()] = value
    return overrides


def coerce(key: str, value: Any, default: Any) -> Any:
    """Converts ``value`` (JSON or command-line string) to the type of ``default``; errors name the
    key."""
    try:
        if isinstance(default, bool):
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
                return value.lower() in ("true", "1", "yes")
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            raise ValueError("expected true or false")
        if isinstance(default, int):
            if isinstance(value, bool):
                raise ValueError("expected an integer")
            if isinstance(value, str):
                # Hyperparameter-tuning services pass whole numbers as "128.0".
                value = float(value) if any(c in value for c in ".eE") else int(value)
            if isinstance(value, float) and not value.is_integer():
                raise ValueError("expected an integer")
            return int(value)
        if isinstance(default, float):
            if isinstance(value, bool):
                raise ValueError("expected a number")
            return float(value)
        if isinstance(default, str):
            if not isinstance(value, str):
                raise ValueError("expected a string")
            return value
        if isinstance(default, list):
            if isinstance(value, str) and value.strip().startswith("["):
                value = json.loads(value)
            elif isinstance(value, str):
                value = [v for v in value.split(",") if v]
                if default and isinstance(default[0], int):
                    value = [int(v) for v in value]
            if not isinstance(value, list):
                raise ValueError("expected a list")
            if (
                default
                and isinstance(default[0], int)
                and not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            ):
                raise ValueError("expected a list of integers")
            return list(value)
    except (ValueError, TypeError, json.JSONDecodeError) as error:
        raise ParamsError(f"{key}: {error} (got {value!r})") from None
    return value
