"""Checks of params.yaml values, shared by params.py and the modules that declare a params section of their own
(a dataset's `data.<name>` section lives with its loader). Each check names the full key in its error."""

from __future__ import annotations

from typing import Any


class ParamsError(ValueError):
    """An invalid params.yaml value; the message names the key."""


def positive_int(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ParamsError(f"{key} must be a positive integer, got {value!r}")


def optional_positive_int(key: str, value: Any) -> None:
    if value is not None:
        positive_int(key, value)


def non_negative_int(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ParamsError(f"{key} must be a non-negative integer, got {value!r}")


def positive_number(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ParamsError(f"{key} must be a number > 0, got {value!r}")


def non_negative_number(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ParamsError(f"{key} must be a number >= 0, got {value!r}")


def fraction(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ParamsError(f"{key} must be a number in [0, 1), got {value!r}")


def choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ParamsError(f"{key} must be one of {', '.join(choices)}, got {value!r}")


def folder_path(key: str, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise ParamsError(f"{key} must be a folder path, got {value!r}")


def check_max_tokens(key: str, encoder: str, max_tokens: int, limit: int) -> None:
    """`<key>.max_tokens` fits the text encoder's `limit` positions (ParamsError otherwise)."""
    if max_tokens > limit:
        raise ParamsError(f"{key}.max_tokens = {max_tokens} but the text encoder {encoder} takes at most "
                          f"{limit} tokens")
