"""Department HMAC-SHA256 signing keys, read from a YAML file.

Accepted shapes, per department code (codes are always read as text, so ``"0012"`` stays
``"0012"``)::

    DEPT-A: a-secret                 # one key
    DEPT-B: [old-secret, new-secret] # several keys, all valid; the last one signs
    DEPT-C:                          # rotation with an overlap
      - key: old-secret
        not_after: 2026-12-31T23:59:59+08:00   # no longer valid after this instant
      - key: hex:7f3a9c...                     # 'hex:' = raw bytes written in hex

A key is valid at instant ``t`` when it has no ``not_after`` or ``t <= not_after``. The
signing key is the valid key that stays valid the longest (no ``not_after`` counts as
forever), the later entry winning a tie.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

__all__ = ["DepartmentKey", "DepartmentKeys", "decode_key"]


class _TextLoader(yaml.SafeLoader):
    """SafeLoader that reads every plain scalar as text (no ints, bools or dates)."""


_TextLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag == "tag:yaml.org,2002:null"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True)
class DepartmentKey:
    secret: bytes
    not_after: datetime | None = None

    def valid_at(self, at: datetime) -> bool:
        return self.not_after is None or at <= self.not_after


def decode_key(text: str) -> bytes:
    """``hex:…`` → the bytes it spells; anything else → its UTF-8 encoding."""
    if text.startswith("hex:"):
        return bytes.fromhex(text[4:])
    return text.encode("utf-8")


def _parse_time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"not_after must be an RFC 3339 timestamp, got {value!r}")
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"not_after {value!r} is not an RFC 3339 timestamp") from None
    if when.tzinfo is None:
        raise ValueError(f"not_after {value!r} needs an offset, e.g. +08:00")
    return when


def _parse_entry(entry: Any) -> DepartmentKey:
    if isinstance(entry, str):
        raw, not_after = entry, None
    elif isinstance(entry, Mapping):
        unknown = set(entry) - {"key", "not_after"}
        if unknown:
            raise ValueError(f"unknown field(s) {sorted(unknown)}; expected 'key', 'not_after'")
        raw = entry.get("key")
        if not isinstance(raw, str):
            raise ValueError("each key entry needs 'key': a string")
        not_after = _parse_time(entry["not_after"]) if entry.get("not_after") else None
    else:
        raise ValueError(f"expected a key string or {{key, not_after}}, got {entry!r}")
    try:
        secret = decode_key(raw)
    except ValueError:
        raise ValueError("a 'hex:' key is not valid hexadecimal") from None
    if not secret:
        raise ValueError("a key is empty")
    return DepartmentKey(secret, not_after)


def _aware(at: datetime | None) -> datetime:
    if at is None:
        return datetime.now(UTC)
    if at.tzinfo is None:
        raise ValueError(f"instant {at.isoformat()} needs a time zone")
    return at


class DepartmentKeys:
    """The keys of every department; immutable once loaded."""

    def __init__(self, keys: Mapping[str, list[DepartmentKey]], source: str = "<memory>") -> None:
        self._keys = {dept: list(entries) for dept, entries in keys.items()}
        self.source = source

    @classmethod
    def load(cls, path: Path | str) -> DepartmentKeys:
        path = Path(path)
        try:
            data = yaml.load(path.read_text(encoding="utf-8"), Loader=_TextLoader)
        except OSError as exc:
            raise ValueError(f"{path}: cannot read department keys: {exc.strerror}") from None
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: not a valid YAML file: {exc}") from None
        return cls.from_mapping(data or {}, source=str(path))

    @classmethod
    def from_mapping(cls, data: Any, source: str = "<memory>") -> DepartmentKeys:
        if not isinstance(data, Mapping):
            raise ValueError(f"{source}: expected a mapping {{department_code: key | [keys]}}")
        keys: dict[str, list[DepartmentKey]] = {}
        for dept, value in data.items():
            if not isinstance(dept, str) or not dept:
                raise ValueError(f"{source}: department code {dept!r} must be a non-empty string")
            entries = value if isinstance(value, list) else [value]
            if not entries:
                raise ValueError(f"{source}: department {dept!r}: no keys listed")
            try:
                keys[dept] = [_parse_entry(e) for e in entries]
            except ValueError as exc:
                raise ValueError(f"{source}: department {dept!r}: {exc}") from None
        return cls(keys, source)

    @property
    def departments(self) -> list[str]:
        return sorted(self._keys)

    def has_keys(self, department: str) -> bool:
        """Whether the department has keys at all (even expired): its events must be signed."""
        return bool(self._keys.get(department))

    def verification_keys(self, department: str, at: datetime | None = None) -> list[bytes]:
        """Every key of ``department`` valid at ``at`` (default: now)."""
        at = _aware(at)
        return [k.secret for k in self._keys.get(department, ()) if k.valid_at(at)]

    def signing_key(self, department: str, at: datetime | None = None) -> bytes | None:
        """The newest key valid at ``at`` (default: now), or ``None``."""
        at = _aware(at)
        valid = [k for k in self._keys.get(department, ()) if k.valid_at(at)]
        if not valid:
            return None
        forever = datetime.max.replace(tzinfo=UTC)
        _, best = max(enumerate(valid), key=lambda ik: (ik[1].not_after or forever, ik[0]))
        return best.secret

    def __repr__(self) -> str:  # never print secrets
        return f"DepartmentKeys({self.source!r}, departments={self.departments})"
