"""Alembic migrations; ``Database.open`` upgrades to head on start-up.

- ``env``        the Alembic environment.
- ``versions/``  the revisions, oldest first.
"""
