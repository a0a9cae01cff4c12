"""send.file: templated names, atomic writes, no silent overwrite, idempotency, the folder as a sandbox."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

import tests.sendkit  # noqa: F401  (test.report: a real PDF and an HTML page as artifacts)
from tests.conftest import policy
from tests.sendkit import REPORT_HTML, pdf_bytes

SLOT = "2026-12-01T07:00:00+00:00"


def file_policy(**params):
    send = {"artifacts": [{"ref": "ctx.report.pdf"}], "folder": "out", **params}
    return policy(
        {"id": "report", "type": "test.report"},
        {"id": "deliver", "type": "send.file", "params": send},
        id="daily",
    )


def output(store, result):
    (row,) = [r for r in store.get_steps(result.run_id) if r["step_id"] == "deliver"]
    return json.loads(row["output_json"])


def error(result):
    return result.steps[1].error


def deliveries(store):
    with sqlite3.connect(store.state_dir / "engine.db") as con:
        if not con.execute("select 1 from sqlite_master where name = 'deliveries'").fetchall():
            return []
        return con.execute("select channel, recipient, status, error from deliveries order by id").fetchall()


def files(folder: Path) -> list[str]:
    """Every file below ``folder`` (hidden temporary files included)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_copies_artifacts_under_templated_names(run, store, tmp_path):
    result = run(
        file_policy(
            artifacts=[{"ref": "ctx.report.pdf"}, {"artifact": {"ref": "ctx.report.html"}, "filename": "index.html"}],
            filename="{{ policy_id }}/{{ run.started_at[:10] }}-{{ index }}-{{ stem }}{{ suffix }}",
        )
    )
    assert result.status == "SUCCESS", error(result)
    day = result.started_at[:10]
    assert files(tmp_path / "out") == [f"daily/{day}-0-report.pdf", f"daily/{day}-1-index.html"]
    assert (tmp_path / "out" / "daily" / f"{day}-0-report.pdf").read_bytes() == pdf_bytes("Daily sales report")
    assert (tmp_path / "out" / "daily" / f"{day}-1-index.html").read_text() == REPORT_HTML
    out = output(store, result)
    assert (out["status"], out["folder"]) == ("sent", str(tmp_path / "out"))
    assert [(f["name"], f["action"], f["size"]) for f in out["files"]] == [
        ("report.pdf", "written", len(pdf_bytes("Daily sales report"))),
        ("index.html", "written", len(REPORT_HTML)),
    ]
    assert deliveries(store) == [("file", f["path"], "sent", None) for f in out["files"]]


def test_the_same_slot_is_delivered_once_unless_forced(run, store, tmp_path):
    first = run(file_policy(), scheduled_for=SLOT)
    target = tmp_path / "out" / "report.pdf"
    target.unlink()  # proves the second run writes nothing
    again = run(file_policy(), scheduled_for=SLOT)
    assert (output(store, again)["status"], target.exists()) == ("duplicate", False)
    assert [f["action"] for f in output(store, again)["files"]] == ["skipped"]
    forced = run(file_policy(force=True), scheduled_for=SLOT)
    assert (output(store, forced)["status"], target.read_bytes()) == ("sent", pdf_bytes("Daily sales report"))
    assert [s for _, _, s, _ in deliveries(store)] == ["sent", "duplicate", "sent"]
    assert output(store, first)["dedup_key"] == output(store, forced)["dedup_key"]


def test_never_overwrites_a_different_file_unless_told(run, store, tmp_path):
    target = tmp_path / "out" / "report.pdf"
    target.parent.mkdir()
    target.write_bytes(b"someone else's file")
    result = run(file_policy())
    assert result.status == "FAILED"
    assert error(result) == (
        f"/steps/1/params/filename: {target}: a different file is already there; nothing was written "
        "(set overwrite: true to replace it, or put a date in filename)"
    )
    assert target.read_bytes() == b"someone else's file"
    assert [s for _, _, s, _ in deliveries(store)] == ["failed"]

    replaced = run(file_policy(overwrite=True))
    assert [f["action"] for f in output(store, replaced)["files"]] == ["replaced"]
    assert target.read_bytes() == pdf_bytes("Daily sales report")
    same = run(file_policy())  # the same bytes already there: nothing to do, and no error
    assert [f["action"] for f in output(store, same)["files"]] == ["unchanged"]
    assert files(tmp_path / "out") == ["report.pdf"]  # no temporary files left behind


def test_writes_go_through_a_temporary_file_and_a_rename(run, tmp_path, monkeypatch):
    seen = []
    real_link = os.link

    def link(src, dst, *args, **kwargs):
        seen.append((Path(src).name, Path(dst).name, Path(src).read_bytes() == pdf_bytes("Daily sales report")))
        return real_link(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "link", link)
    assert run(file_policy()).status == "SUCCESS"
    ((tmp_name, final, complete),) = seen
    assert tmp_name.startswith(".report.pdf.") and tmp_name.endswith(".tmp")
    assert (final, complete) == ("report.pdf", True)


@pytest.mark.parametrize(
    "filename, message",
    [
        ("../escaped.pdf", "'../escaped.pdf' is not a file name inside the folder"),
        ("/etc/escaped.pdf", "'/etc/escaped.pdf' is not a file name inside the folder"),
        ("{{ '..' }}/x.pdf", "'../x.pdf' is not a file name inside the folder"),
        ("link/escaped.pdf", "'link/escaped.pdf' leads outside the folder"),
    ],
    ids=["dotdot", "absolute", "templated-dotdot", "symlink"],
)
def test_refuses_names_that_leave_the_folder(run, tmp_path, filename, message):
    (tmp_path / "out").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out" / "link").symlink_to(tmp_path / "elsewhere")
    result = run(file_policy(filename=filename))
    assert result.status == "FAILED"
    assert error(result).startswith(f"/steps/1/params/filename: {message}")
    assert files(tmp_path / "elsewhere") == [] and not (tmp_path / "escaped.pdf").exists()


def test_template_errors_name_the_variables(run):
    result = run(file_policy(filename="{{ nope }}.pdf"))
    assert error(result) == (
        "/steps/1/params/filename: 'nope' is undefined "
        "(names available: policy_id, step_id, run, params, name, stem, suffix, index, sha256)"
    )


def test_a_dry_run_says_what_it_would_do_and_writes_nothing(run, store, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "report.pdf").write_bytes(b"old")
    result = run(file_policy(filename="{{ name }}", overwrite=True), dry_run=True)
    assert result.status == "SUCCESS"
    preview = json.loads((Path(result.preview_dir) / "deliver.json").read_text())
    assert (preview["status"], [f["action"] for f in preview["files"]]) == ("preview", ["would_replace"])
    assert (tmp_path / "out" / "report.pdf").read_bytes() == b"old"
    assert deliveries(store) == []


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)], ids=["022", "077", "002"])
def test_delivered_files_follow_the_umask(run, tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        assert run(file_policy(overwrite=True)).status == "SUCCESS"
        first = (tmp_path / "out" / "report.pdf").stat().st_mode & 0o777
        # a replacement (another file at the target, overwrite: true) gets the same mode
        (tmp_path / "out" / "report.pdf").write_bytes(b"old")
        assert run(file_policy(overwrite=True)).status == "SUCCESS"
        replaced = (tmp_path / "out" / "report.pdf").stat().st_mode & 0o777
    finally:
        os.umask(old)
    assert (oct(first), oct(replaced)) == (oct(mode), oct(mode))
