"""Alembic migrations, shipped in the package.

HEAD is the newest revision, so commands can check a store's schema without loading Alembic;
tests/test_foundation.py asserts it matches the migration scripts.
"""

HEAD = "0018"
