"""The database schema as typed SQLAlchemy models.

This describes the schema at the newest migration; the migrations in
storage/migrations are what actually create and change it (a test checks
that both agree).  Lists of short tokens (blocking methods, addresses,
failure names) are stored joined with ";" so that exports and filters read
them as plain text.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    Time,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from storage.records import CERTAINTIES, EVENT_KINDS

JSONDocument = JSON().with_variant(JSONB(), "postgresql")


class JSONText(TypeDecorator[Any]):
    """A JSON document kept as its text (what SQLite's JSON type does anyway).

    For the observations on PostgreSQL: JSONB would parse every 5 KB document
    again on insert, which cost a collector more CPU than all of its own
    decoding (storage.wire validates each document before it is stored).
    Nothing queries inside them; ``data::jsonb`` does, for a researcher in SQL.
    """

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else json.dumps(value, separators=(",", ":"))

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        return None if value is None else json.loads(value)


ObservationDocument = JSON().with_variant(JSONText(), "postgresql")


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC datetime on every backend.

    SQLite has no time zones: values are stored as UTC text and come back
    tagged UTC, so comparisons and ordering agree with PostgreSQL.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        value = value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    pass


class VantageModel(Base):
    """One description of a vantage point; a changed description is a new row,
    so each measurement keeps the network it was really taken from."""

    __tablename__ = "vantages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of all fields
    name: Mapped[str] = mapped_column(String(200), index=True)
    country: Mapped[str | None] = mapped_column(String(2))
    asn: Mapped[int | None] = mapped_column(BigInteger)
    network: Mapped[str | None] = mapped_column(Text)
    notes: Mapped[str | None] = mapped_column(Text)
    # Set on a collector for vantages registered with `probe collector vantage add`:
    # the sha256 of the upload token (never the token), and its life.
    token_hash: Mapped[str | None] = mapped_column(String(64))
    revoked: Mapped[bool] = mapped_column(Boolean, server_default=false(), default=False)
    created_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ux_vantages_token_hash", "token_hash", unique=True),
        # One registration per name: uploads are attributed by name.
        Index(
            "ux_vantages_registered_name",
            "name",
            unique=True,
            sqlite_where=text("token_hash IS NOT NULL"),
            postgresql_where=text("token_hash IS NOT NULL"),
        ),
    )


class MeasurementModel(Base):
    """One domain checked once from one vantage: verdict plus summary columns."""

    __tablename__ = "measurements"
    __table_args__ = (
        Index("ix_measurements_started_at", "started_at", "id"),  # the export order
        Index("ix_measurements_domain_started_at", "domain", "started_at"),
        Index("ix_measurements_vantage_started_at", "vantage_id", "started_at"),
        Index("ix_measurements_status", "status"),
        # The dashboard's latest-per-pair and platform-domain lookups (storage.dashboard);
        # the latter serves every filter on the platform (0009 dropped the platform-only
        # and first_failure indexes, which no query used).
        Index("ix_measurements_vantage_domain_started_at", "vantage_id", "domain", "started_at"),
        Index("ix_measurements_platform_domain", "platform", "domain"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # UUID, canonical text
    vantage_id: Mapped[int] = mapped_column(ForeignKey("vantages.id"))
    domain: Mapped[str] = mapped_column(String(253))
    input: Mapped[str] = mapped_column(Text)
    platform: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    duration_ms: Mapped[float] = mapped_column(Float)
    resolver: Mapped[str] = mapped_column(Text)
    probe_version: Mapped[str] = mapped_column(String(64))
    stored_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # The verdict (re-written by reclassify).
    status: Mapped[str] = mapped_column(String(16))
    blocking: Mapped[str] = mapped_column(Text)  # Method values joined with ";"
    trigger: Mapped[str | None] = mapped_column(String(16))
    reasons: Mapped[list[str]] = mapped_column(JSONDocument)
    blockpage: Mapped[str | None] = mapped_column(Text)
    https_ok: Mapped[bool | None] = mapped_column(Boolean)
    classifier_version: Mapped[str] = mapped_column(String(32))
    notes: Mapped[list[str] | None] = mapped_column(JSONDocument)  # side details (NULL before 0003)
    # Summary of the observations (storage.summary).
    dns_answers: Mapped[str] = mapped_column(Text)
    control_answers: Mapped[str] = mapped_column(Text)
    first_failure: Mapped[str | None] = mapped_column(String(64))
    tls_failures: Mapped[str] = mapped_column(Text)
    http_status: Mapped[int | None] = mapped_column(Integer)
    http_failures: Mapped[str] = mapped_column(Text)
    http_title: Mapped[str | None] = mapped_column(Text)
    tcp_ms: Mapped[float | None] = mapped_column(Float)
    tls_ms: Mapped[float | None] = mapped_column(Float)
    http_ms: Mapped[float | None] = mapped_column(Float)
    helper_saw_site: Mapped[str | None] = mapped_column(String(8))  # "true"/"false"/NULL


class ObservationsModel(Base):
    """The full DomainObservations (probe.observations.to_dict), kept apart so
    that scans of measurements stay narrow (JSON text on PostgreSQL: see JSONText)."""

    __tablename__ = "observations"

    measurement_id: Mapped[str] = mapped_column(
        ForeignKey("measurements.id", ondelete="CASCADE"), primary_key=True
    )
    data: Mapped[dict[str, Any]] = mapped_column(ObservationDocument)


class UploadModel(Base):
    """On a probe: a measurement the collector at ``collector`` confirmed.

    The backlog is every measurement without such a row, so a measurement
    saved at any moment (or replayed from the spool later) is simply part of
    the next upload: there is no queue to drain and no window to lose one in.
    """

    __tablename__ = "uploads"
    __table_args__ = (Index("ix_uploads_collector_uploaded_at", "collector", "uploaded_at"),)

    collector: Mapped[str] = mapped_column(String(500), primary_key=True)
    measurement_id: Mapped[str] = mapped_column(
        ForeignKey("measurements.id", ondelete="CASCADE"), primary_key=True
    )
    uploaded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class TimelineEventModel(Base):
    __tablename__ = "timeline_events"
    __table_args__ = (
        UniqueConstraint("date", "country", "platform", "kind", "title", name="uq_timeline_event"),
        CheckConstraint(
            "kind IN (" + ", ".join(f"'{k}'" for k in EVENT_KINDS) + ")",
            name="ck_timeline_kind",
        ),
        CheckConstraint(
            "certainty IN (" + ", ".join(f"'{c}'" for c in CERTAINTIES) + ")",
            name="ck_timeline_certainty",
        ),
        Index("ix_timeline_country_platform_date", "country", "platform", "date"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    date: Mapped[dt.date] = mapped_column(Date)
    time: Mapped[dt.time | None] = mapped_column(Time)
    country: Mapped[str] = mapped_column(String(2))
    platform: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text)
    url: Mapped[str | None] = mapped_column(Text)
    certainty: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class TraceModel(Base):
    """One ``probe trace`` (probe.trace.observations.TraceObservation as a JSON document)
    and where its decision put the censor (re-written by ``probe traces --relocate``)."""

    __tablename__ = "traces"
    __table_args__ = (Index("ix_traces_domain_started_at", "domain", "started_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # UUID, canonical text
    vantage_id: Mapped[int] = mapped_column(ForeignKey("vantages.id"))
    measurement_id: Mapped[str | None] = mapped_column(
        ForeignKey("measurements.id", ondelete="SET NULL"), index=True
    )  # the check that found the target blocked, when one did
    domain: Mapped[str] = mapped_column(String(253))
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    duration_ms: Mapped[float] = mapped_column(Float)
    stored_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    interference: Mapped[str | None] = mapped_column(String(32))
    censor_hop: Mapped[int | None] = mapped_column(Integer)
    censor_address: Mapped[str | None] = mapped_column(Text)
    evidence: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSONDocument)


vantages = cast(Table, VantageModel.__table__)
measurements = cast(Table, MeasurementModel.__table__)
observations = cast(Table, ObservationsModel.__table__)
timeline_events = cast(Table, TimelineEventModel.__table__)
uploads = cast(Table, UploadModel.__table__)
traces = cast(Table, TraceModel.__table__)
