"""The schema, as SQLAlchemy 2 declarative models.

Every row carries ``workspace_id`` so that more than one workspace can follow without a
schema change. Hot paths (claiming, imports, webhooks) use Core statements against these
tables; the ORM classes are for readability elsewhere.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from storage.types import UTCDateTime

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: SQLite wants INTEGER PRIMARY KEY for rowid aliasing; PostgreSQL gets BIGINT.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(none_as_null=True),
        list[Any]: JSON(),
    }


class Workspace(Base):
    __tablename__ = "workspaces"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime]


class Admin(Base):
    """A person allowed to run admin commands, on one channel."""

    __tablename__ = "admins"
    __table_args__ = (UniqueConstraint("workspace_id", "channel", "identifier"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"))
    channel: Mapped[str] = mapped_column(String(20))  # telegram | whatsapp | cli
    identifier: Mapped[str] = mapped_column(String(100))  # Telegram user id or E.164 number
    created_at: Mapped[datetime]


class Sequence(Base):
    __tablename__ = "sequences"
    __table_args__ = (
        UniqueConstraint("workspace_id", "name_key"),
        Index(
            "uq_sequences_keyword",
            "workspace_id",
            "keyword",
            unique=True,
            sqlite_where=text("keyword IS NOT NULL AND status != 'archived'"),
            postgresql_where=text("keyword IS NOT NULL AND status != 'archived'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"))
    name: Mapped[str] = mapped_column(String(200))
    #: casefolded name: sequence names are unique per workspace, case-insensitively
    name_key: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), default="active")
    #: "HH:MM-HH:MM", "always", or None for the configured default
    send_window: Mapped[str | None] = mapped_column(String(20))
    stop_on_reply: Mapped[bool] = mapped_column(Boolean, default=False)
    #: normalised (upper case, single spaces) keyword that enrolls a lead who sends it
    keyword: Mapped[str | None] = mapped_column(String(100))
    paused_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Step(Base):
    __tablename__ = "steps"
    __table_args__ = (Index("ix_steps_sequence", "sequence_id", "position"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    sequence_id: Mapped[int] = mapped_column(ForeignKey("sequences.id", ondelete="CASCADE"))
    #: 1-based place in the sequence, in send order; renumbered on every change
    position: Mapped[int]
    #: Day N (1-based) with an optional local "HH:MM", or a fixed delay in seconds
    day: Mapped[int | None]
    at: Mapped[str | None] = mapped_column(String(5))
    after_seconds: Mapped[int | None] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(20))  # text | media | template
    body: Mapped[str] = mapped_column(Text, default="")  # text, or media caption
    media_url: Mapped[str | None] = mapped_column(Text)
    media_type: Mapped[str | None] = mapped_column(String(20))
    #: {"name", "language", "params": [...], "header": {"type", "link"} | None}
    template: Mapped[dict[str, Any] | None]
    fallback_template: Mapped[dict[str, Any] | None]
    #: set when Meta rejected the template: the step waits for /resume <seq>
    paused_at: Mapped[datetime | None]
    pause_reason: Mapped[str | None] = mapped_column(Text)
    #: set when "skipped, window closed" has been reported to admins once
    skip_alerted_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class Contact(Base):
    __tablename__ = "contacts"
    __table_args__ = (
        UniqueConstraint("workspace_id", "phone"),
        UniqueConstraint("workspace_id", "user_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"))
    #: E.164 with "+"; None for a lead known only by a business-scoped user id
    phone: Mapped[str | None] = mapped_column(String(20))
    #: WhatsApp business-scoped user id (BSUID), e.g. "US.13491208655302741918"
    user_id: Mapped[str | None] = mapped_column(String(100))
    name: Mapped[str | None] = mapped_column(String(200))
    first_name: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    company: Mapped[str | None] = mapped_column(String(200))
    #: explicit IANA zone; None means "from the number's region, else the default"
    timezone: Mapped[str | None] = mapped_column(String(64))
    custom_fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    opted_out_at: Mapped[datetime | None]
    opt_out_source: Mapped[str | None] = mapped_column(String(40))
    undeliverable_at: Mapped[datetime | None]
    #: last message from the lead: opens the 24-hour customer-service window
    last_inbound_at: Mapped[datetime | None]
    #: drips hold until then after an admin answered the lead by hand
    hold_until: Mapped[datetime | None]
    paused_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Enrollment(Base):
    __tablename__ = "enrollments"
    __table_args__ = (
        # A contact is live at most once per sequence; history rows are many.
        Index(
            "uq_enrollments_live",
            "sequence_id",
            "contact_id",
            unique=True,
            sqlite_where=text("status IN ('active', 'paused')"),
            postgresql_where=text("status IN ('active', 'paused')"),
        ),
        Index("ix_enrollments_contact", "contact_id"),
        Index("ix_enrollments_sequence_status", "sequence_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"))
    sequence_id: Mapped[int] = mapped_column(ForeignKey("sequences.id"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"))
    status: Mapped[str] = mapped_column(String(20), default="active")
    enrolled_at: Mapped[datetime]
    #: the IANA zone the schedule was computed in
    timezone: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(20), default="command")  # command|csv|api|keyword
    #: how far the schedule moved after enrollment (pauses, Meta's per-user cap deferrals)
    shift_seconds: Mapped[int] = mapped_column(BigInteger, default=0)
    paused_at: Mapped[datetime | None]
    replied_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(Text)


class OutboundMessage(Base):
    """The outbox: one row per step due to one contact, before it is sent."""

    __tablename__ = "outbound_messages"
    __table_args__ = (
        # The claim moves rows from scheduled to sending, which rewrites their entry in every
        # index that holds a column it changes (on PostgreSQL, in every index whose condition
        # the new row meets): so the indexes are few, and those only some rows need are
        # partial.
        #
        # The claim's ORDER BY due_at, id, so PostgreSQL reads only what it takes; also the
        # reclaim of sends in doubt (the few rows in "sending") and the status-and-period
        # counts of /stats, /queue and the alerts.
        Index("ix_outbound_claim", "status", "due_at", "id"),
        Index("ix_outbound_enrollment", "enrollment_id"),
        # a contact has a handful of rows: their status is read from the table
        Index("ix_outbound_contact", "contact_id"),
        # Meta's daily reach and the sent counts: only rows that were sent
        Index(
            "ix_outbound_reach",
            "workspace_id",
            "business_initiated",
            "sent_at",
            sqlite_where=text("sent_at IS NOT NULL"),
            postgresql_where=text("sent_at IS NOT NULL"),
        ),
        Index("ix_outbound_sequence_step", "sequence_id", "step_id", "status"),
        # status webhooks find their message by it; unsent rows have none
        Index(
            "uq_outbound_messages_wamid",
            "wamid",
            unique=True,
            sqlite_where=text("wamid IS NOT NULL"),
            postgresql_where=text("wamid IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"))
    #: None for one-off messages (/test, an admin's answer to a lead, confirmations)
    enrollment_id: Mapped[int | None] = mapped_column(ForeignKey("enrollments.id"))
    sequence_id: Mapped[int | None] = mapped_column(ForeignKey("sequences.id"))
    step_id: Mapped[int | None] = mapped_column(ForeignKey("steps.id"))
    purpose: Mapped[str] = mapped_column(String(20), default="drip")  # drip|test|takeover|notice
    status: Mapped[str] = mapped_column(String(20), default="scheduled")
    due_at: Mapped[datetime]
    #: an in-doubt "sending" row may be retried after this instant
    lease_until: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: the payload actually sent (kind, text, template...), for /contact and audits
    payload: Mapped[dict[str, Any] | None]
    wamid: Mapped[str | None] = mapped_column(String(200))
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    #: sent as a template outside the lead's 24-hour window: counts against Meta's daily reach
    business_initiated: Mapped[bool] = mapped_column(Boolean, default=False)
    error_code: Mapped[int | None]
    error_detail: Mapped[str | None] = mapped_column(Text)
    #: why the message waits longer than planned (e.g. Meta's per-user marketing cap)
    deferred_reason: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    read_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class InboundMessage(Base):
    """Every message a lead (or admin) sent us, once, keyed by its WhatsApp id."""

    __tablename__ = "inbound_messages"
    __table_args__ = (UniqueConstraint("wamid"), Index("ix_inbound_contact", "contact_id"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"))
    wamid: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(30))
    body: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime]


class WebhookEvent(Base):
    """The raw body of every signed webhook POST, stored before the 200 goes back."""

    __tablename__ = "webhook_events"
    __table_args__ = (Index("ix_webhook_unprocessed", "processed_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source: Mapped[str] = mapped_column(String(20), default="whatsapp")
    body: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime]
    processed_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (UniqueConstraint("key_hash"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"))
    name: Mapped[str] = mapped_column(String(200), default="")
    scope: Mapped[str] = mapped_column(String(20))  # admin | public
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class Setting(Base):
    """Small shared switches that every replica must see (e.g. "sending paused")."""

    __tablename__ = "settings"
    __table_args__ = (UniqueConstraint("workspace_id", "key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"))
    key: Mapped[str] = mapped_column(String(100))
    value: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime]


class JobRun(Base):
    """Once-only markers for periodic jobs shared by replicas (daily summary, alerts)."""

    __tablename__ = "job_runs"
    __table_args__ = (UniqueConstraint("job", "run_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    job: Mapped[str] = mapped_column(String(100))
    run_key: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]


class ForwardedMessage(Base):
    """A lead's reply as forwarded into an admin's Telegram chat, so that an admin's answer
    to that chat message can find the lead again (takeover)."""

    __tablename__ = "forwarded_messages"
    __table_args__ = (UniqueConstraint("chat_id", "message_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    message_id: Mapped[int] = mapped_column(BigInteger)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"))
    created_at: Mapped[datetime]


class RateBucket(Base):
    """A token bucket shared by every process, so a rate holds for their sum."""

    __tablename__ = "rate_buckets"
    __table_args__ = (UniqueConstraint("key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(100))
    tokens: Mapped[float]
    updated_at: Mapped[datetime]
