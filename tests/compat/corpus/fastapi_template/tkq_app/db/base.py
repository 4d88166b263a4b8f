from sqlalchemy.orm import DeclarativeBase
from tkq_app.db.meta import meta


class Base(DeclarativeBase):
    """Base for all models."""

    metadata = meta

