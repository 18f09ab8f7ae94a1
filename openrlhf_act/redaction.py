"""Secrets never reach a file or a message: API keys, tokens, passwords, ``Authorization`` values and the
credentials in a URL (``https://user:pass@host``) are redacted wherever settings are recorded.

One rule, by name: a setting whose key names a credential (``api_key``, ``access_token``, ``password``,
``Authorization``, ``client_secret``, ...; not ``max_tokens`` or ``tokenizer``) has its value replaced by
:data:`REDACTED` at any depth (engine kwargs, headers); any string loses a URL's userinfo and the value
after ``Bearer`` or ``api_key=`` (an error message that quotes a request). Keys are taken from environment
variables by default (``OPENAI_API_KEY``), so a command line need not hold one either.

Redacted values are not compared when a run resumes (:func:`comparable`): a rotated key is the same run.
"""

from __future__ import annotations

import logging
import re
from typing import Any

REDACTED = "<redacted>"

# A key naming a credential, in snake, kebab or camel case (lowercased, separators made "_"): words that
# hold one ("apikey", "client_secret"), and tokens of access ("hf_token", "accessToken"), not a
# tokenizer's special tokens ("eos_token", "pad_token_id") or counts ("max_tokens").
_SECRET_KEY = re.compile(
    r"api_?key|secret|passw(?:or)?d|authori[sz]ation|credential|cookie|bearer|private_?key|session_?key"
    r"|(?:^|_)(?:auth|pwd)(?:$|_)"
    r"|^token$|(?:^|_)(?:access|refresh|auth|api|hf|hub|github|gh|session|oauth|wandb|id)_?token$"
)
_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.-]*://)[^/?#@\s]+@", re.IGNORECASE)
_INLINE = re.compile(
    r"(?P<name>\bbearer\s+|\bauthorization['\"]?\s*[=:]\s*['\"]?(?:basic\s+|bearer\s+|token\s+)?"
    r"|\b(?:api[_-]?key|access[_-]?token|password|secret)['\"]?\s*[=:]\s*['\"]?)"
    r"(?!<redacted>)[^\s'\",;&]+",
    re.IGNORECASE,
)


def is_secret_key(key: object) -> bool:
    """Whether a setting's name says its value is a credential.

    >>> keys = ("api_key", "apiKey", "hf_token", "Authorization", "max_tokens", "tokenizer", "eos_token")
    >>> [k for k in keys if is_secret_key(k)]
    ['api_key', 'apiKey', 'hf_token', 'Authorization']
    """
    if not isinstance(key, str):
        return False
    return _SECRET_KEY.search(re.sub(r"[^a-z0-9]+", "_", key.lower())) is not None


def redact_text(text: str) -> str:
    """``text`` without URL credentials and inline ``Bearer``/``api_key=`` values.

    >>> redact_text("POST https://me:sk-1@host/v1 failed: Authorization: Bearer sk-1")
    'POST https://<redacted>@host/v1 failed: Authorization: Bearer <redacted>'
    """
    text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)
    return _INLINE.sub(lambda m: m["name"] + REDACTED, text)


def redact(value: Any) -> Any:
    """A copy of settings (dicts, lists, strings at any depth) with every secret redacted.

    >>> redact({"model": "m", "api_key": "sk-1", "engine_kwargs": {"headers": {"Authorization": "Bearer x"}},
    ...         "base_url": "http://u:p@h:8000/v1", "max_tokens": 64})  # doctest: +NORMALIZE_WHITESPACE
    {'model': 'm', 'api_key': '<redacted>', 'engine_kwargs': {'headers': {'Authorization': '<redacted>'}},
     'base_url': 'http://<redacted>@h:8000/v1', 'max_tokens': 64}
    """
    if isinstance(value, dict):
        return {k: REDACTED if is_secret_key(k) and v not in (None, "") else redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def comparable(value: Any) -> Any:
    """Redacted settings without their redacted entries: what decides whether two runs are the same run
    (a changed key, or one given only now, is not a different run)."""
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if v != REDACTED and not is_secret_key(k)}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


class RedactingFilter(logging.Filter):
    """A handler filter: the messages it emits pass through :func:`redact_text` (a URL or a client's
    error quoted in a log line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True
