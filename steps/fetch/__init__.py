"""Fetch stage: bring data in. Importing this package registers its step types.

``fetch.http`` (allowed hosts, rate limits, retries, cache, pagination), ``fetch.file`` (CSV,
JSON, JSONL, Parquet) and ``fetch.sql`` (read-only SQLite).
"""

from . import file as file
from . import http as http
from . import sql as sql
