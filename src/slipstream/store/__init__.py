"""Database access: SQLAlchemy Core tables, the async engine, and Alembic migrations.

- ``tables``         the schema.
- ``db``             the async engine per backend; migrations to head on open.
- ``sqlite_writer``  idempotent bulk inserts from one SQLite writer thread.
- ``state``          small server-wide values (admin token digest, auth version).
- ``migrations/``    Alembic environment and revisions.
"""
