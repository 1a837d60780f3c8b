"""A collector's registered vantages and their upload tokens.

A registration is a row of ``vantages`` with a token hash: the collector
attributes every upload to the vantage its token belongs to.  Only the
SHA-256 of a token is stored.  A plain hash (not bcrypt/argon2) is enough
because tokens are 256 random bits, not passwords: there is no dictionary to
try, and a fast hash lets the collector find the token's row by an index
lookup on every request.  Revocation is permanent; a vantage that needs a
new token is registered again under a new name.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.engine import Row

from probe.errors import UsageError
from storage.database import Database
from storage.models import vantages
from storage.records import Vantage
from storage.store import vantage_row

TOKEN_PREFIX = "rpv1_"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")

v = vantages.c


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class Registration:
    id: int
    vantage: Vantage
    revoked: bool
    created_at: dt.datetime | None
    last_seen_at: dt.datetime | None


class Registry:
    """Register, list, revoke and authenticate vantages on one database."""

    def __init__(self, db: Database, clock: Callable[[], dt.datetime] | None = None) -> None:
        self._db = db
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))

    def add(self, vantage: Vantage) -> tuple[Registration, str]:
        """Register ``vantage``; returns it and its new token (shown once, never stored)."""
        if not _NAME.fullmatch(vantage.name):
            raise UsageError(
                f"vantage name {vantage.name!r}: use 1-100 letters, digits, '.', '_' or '-'"
            )
        token = new_token()
        now = self._clock()

        def run(conn: Connection) -> int:
            taken = conn.execute(
                select(v.id).where(v.name == vantage.name, v.token_hash.is_not(None))
            ).first()
            if taken is not None:
                raise UsageError(f"vantage {vantage.name!r} is already registered")
            row = vantage_row(vantage)
            registration = {"token_hash": hash_token(token), "revoked": False, "created_at": now}
            found = conn.execute(select(v.id).where(v.key == row["key"])).scalar()
            if found is not None:  # measurements were imported under it before
                conn.execute(update(vantages).where(v.id == found).values(registration))
                return int(found)
            values = {**row, **registration}
            return int(conn.execute(insert(vantages).values(values).returning(v.id)).scalar_one())

        new_id = self._db.write(run)
        return Registration(new_id, vantage, False, now, None), token

    def list(self) -> list[Registration]:
        stmt = _select().where(v.token_hash.is_not(None)).order_by(v.name)
        with self._db.reading() as conn:
            return [_registration(r) for r in conn.execute(stmt)]

    def revoke(self, name: str) -> Registration:
        """Revoke ``name``'s token for good; its measurements stay."""

        def run(conn: Connection) -> Row[Any]:
            conn.execute(
                update(vantages)
                .where(v.name == name, v.token_hash.is_not(None))
                .values(revoked=True)
            )
            found = conn.execute(_select().where(v.name == name, v.token_hash.is_not(None))).first()
            if found is None:
                raise UsageError(f"no registered vantage named {name!r}")
            return found

        return _registration(self._db.write(run))

    def authenticate(self, token: str) -> Registration | None:
        """The registration ``token`` belongs to (revoked ones too), or None."""
        with self._db.reading() as conn:
            found = conn.execute(_select().where(v.token_hash == hash_token(token))).first()
        return _registration(found) if found is not None else None


def _select() -> Any:
    return select(
        v.id,
        v.name,
        v.country,
        v.asn,
        v.network,
        v.notes,
        v.revoked,
        v.created_at,
        v.last_seen_at,
    )


def _registration(r: Row[Any]) -> Registration:
    return Registration(
        id=r.id,
        vantage=Vantage(r.name, r.country, r.asn, r.network, r.notes),
        revoked=bool(r.revoked),
        created_at=r.created_at,
        last_seen_at=r.last_seen_at,
    )
