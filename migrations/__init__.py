"""Alembic migrations; `privacy-api migrate` runs them."""
