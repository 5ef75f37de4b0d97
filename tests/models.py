"""Plain SQLAlchemy (no Flask-SQLAlchemy) token models shared by the tests
that need a real database behind ``create_bearer_token_validator``."""

from __future__ import annotations

from sqlalchemy import Boolean, Integer, String
from sqlalchemy.dialects.postgresql import CITEXT
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Token(Base):
    """The seed-era shape: a ``revoked`` flag, expiry from issued_at + expires_in."""

    __tablename__ = "plain_token"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    access_token: Mapped[str] = mapped_column(String(255), unique=True)
    scope: Mapped[str] = mapped_column(String(255))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    issued_at: Mapped[int] = mapped_column(Integer)
    expires_in: Mapped[int] = mapped_column(Integer)

    def get_scope(self) -> str:
        return self.scope


class CaseInsensitiveBase(DeclarativeBase):
    """Its own metadata: ``citext`` needs a PostgreSQL extension the other tests lack."""


class CaseInsensitiveToken(CaseInsensitiveBase):
    """A token column that compares case-insensitively, as MySQL's default
    collations do: SQLite ``NOCASE``, PostgreSQL ``citext``."""

    __tablename__ = "ci_token"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    access_token: Mapped[str] = mapped_column(
        String(255, collation="NOCASE").with_variant(CITEXT(), "postgresql"), unique=True
    )
    scope: Mapped[str] = mapped_column(String(255))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    issued_at: Mapped[int] = mapped_column(Integer)
    expires_in: Mapped[int] = mapped_column(Integer)

    def get_scope(self) -> str:
        return self.scope
