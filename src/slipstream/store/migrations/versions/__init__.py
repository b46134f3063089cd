"""Alembic revisions, oldest first.

- ``r0001_initial``  model access keys, the usage ledger and server state.
"""
