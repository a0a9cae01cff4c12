"""docs/governance.md: the stand-alone audit verification script works, against the engine's own chain."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys

from engine.governance import audit, registry
from engine.store import Store
from tests.conftest import ROOT

DOC = ROOT / "docs" / "governance.md"


def script() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    (found,) = [b for b in blocks if b.startswith("# verify_audit.py")]
    return found


def test_the_documented_script_verifies_the_chain_and_finds_an_edit(tmp_path):
    store = Store(tmp_path / "state")
    for value in range(3):
        doc = {
            "schema_version": 1,
            "id": "daily",
            "steps": [{"id": "a", "type": "core.value", "params": {"value": value}}],
        }
        registry.record_version(store.engine, doc, actor="user:ada", source="cli")
    audit.record(store.engine, "user:ada", "run.started", "run-1", {"policy_id": "daily", "note": "café ✓"})
    seq, head = audit.head(store.engine)
    store.close()
    path = tmp_path / "verify_audit.py"
    path.write_text(script(), encoding="utf-8")
    db = tmp_path / "state" / "engine.db"
    ok = subprocess.run([sys.executable, str(path), str(db)], capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == f"verified {seq} entries, head {head}"
    with sqlite3.connect(db) as con:
        con.execute("DROP TRIGGER audit_log_no_update")
        con.execute("UPDATE audit_log SET actor = 'user:mallory' WHERE seq = 2")
    bad = subprocess.run([sys.executable, str(path), str(db)], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1 and "broken at seq 2" in bad.stderr
