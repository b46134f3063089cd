"""Alembic migrations; ``Database.open`` upgrades to head on start-up."""
