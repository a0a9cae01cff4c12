"""Fetch stage: bring data in. Importing this package registers its step types.

For now: ``fetch.file`` (CSV, JSON, JSONL, Parquet) and ``fetch.sql`` (read-only SQLite).
"""

from . import file as file
from . import sql as sql
