"""Published versions of the privacy policy."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base


class PolicyVersion(Base):
    __tablename__ = "policy_versions"

    version: Mapped[str] = mapped_column(String(32), primary_key=True)
    published_at: Mapped[datetime] = mapped_column(index=True)
    summary: Mapped[str] = mapped_column(Text)
    material: Mapped[bool] = mapped_column(default=True)
