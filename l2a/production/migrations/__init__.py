"""Alembic migrations of the status database (run by ``Database.upgrade``)."""
