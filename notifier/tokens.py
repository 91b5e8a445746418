"""API tokens, from YAML (``JIANCHA_NOTIFIER_TOKENS_FILE``)::

    tokens:
      - name: bureau-duty             # recorded in the alert history as who acted
        role: bureau                  # sees and handles every department's alerts
        token_sha256: 9f86d081…       # sha256 hex of the token (preferred) …
      - name: gongan-contact
        role: department              # sees and acknowledges its own department's alerts
        department: gongan
        token: change-me-gongan       # … or the token itself (development only)

A request sends ``Authorization: Bearer <token>``. Errors name the file and the key. The
worker reads the same file: its per-handler scores (``/api/indicators?scope=handler``)
answer only a bureau token.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from .yaml_file import read_yaml


class TokensError(ValueError):
    """The tokens file is malformed; the message names the file and the key."""


class TokenEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    role: Literal["bureau", "department"]
    department: str | None = None
    token: SecretStr | None = None
    token_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")

    @model_validator(mode="after")
    def _check(self) -> TokenEntry:
        if (self.token is None) == (self.token_sha256 is None):
            raise ValueError("give exactly one of token or token_sha256")
        if self.token is not None and len(self.token.get_secret_value()) < 8:
            raise ValueError("token must have at least 8 characters")
        if self.role == "department" and not self.department:
            raise ValueError("a department token needs 'department'")
        if self.role == "bureau" and self.department:
            raise ValueError("a bureau token sees every department; drop 'department'")
        return self

    @property
    def digest(self) -> str:
        if self.token_sha256:
            return self.token_sha256
        assert self.token is not None
        return hashlib.sha256(self.token.get_secret_value().encode()).hexdigest()


class TokensFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tokens: list[TokenEntry] = Field(default_factory=list)


@dataclass(frozen=True)
class Principal:
    name: str
    role: Literal["bureau", "department"]
    department: str | None = None

    @property
    def is_bureau(self) -> bool:
        return self.role == "bureau"

    def can_see(self, department: str | None) -> bool:
        return self.is_bureau or (department is not None and department == self.department)


class Tokens:
    def __init__(self, entries: list[TokenEntry]) -> None:
        self._entries = [(e.digest, Principal(e.name, e.role, e.department)) for e in entries]

    def __len__(self) -> int:
        return len(self._entries)

    def authenticate(self, presented: str) -> Principal | None:
        digest = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).hexdigest()
        found = None
        for known, principal in self._entries:  # compare all: no timing hint which one
            if hmac.compare_digest(known, digest):
                found = principal
        return found


def bearer(tokens: Tokens, authorization: str) -> Principal | None:
    """The principal of an ``Authorization: Bearer <token>`` header value, if known."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return tokens.authenticate(token.strip())


def parse_tokens(doc: Any, source: Path | str = "<tokens>") -> Tokens:
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise TokensError(f"{source}: expected a mapping with a list 'tokens'")
    try:
        parsed = TokensFile.model_validate(doc)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors())
        raise TokensError(f"{source}: {problems}") from None
    names = [e.name for e in parsed.tokens]
    for i, name in enumerate(names):
        if names.index(name) != i:
            raise TokensError(f"{source}: tokens.{i}.name: {name!r} used twice")
    digests = [e.digest for e in parsed.tokens]
    for i, digest in enumerate(digests):
        if digests.index(digest) != i:
            raise TokensError(f"{source}: tokens.{i}: the same token as tokens.{digests.index(digest)}")
    return Tokens(parsed.tokens)


def load_tokens(path: Path | str) -> Tokens:
    path = Path(path)
    return parse_tokens(read_yaml(path, TokensError, "tokens file"), path)
