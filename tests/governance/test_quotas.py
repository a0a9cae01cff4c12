"""Quotas count per actor over a sliding window in the database; 0 means unlimited."""

from __future__ import annotations

import datetime as dt

import pytest

from engine.errors import ConfigError, QuotaExceeded
from engine.governance import audit, quotas
from tests.governance.conftest import config

T0 = dt.datetime(2026, 12, 1, 7, 0, tzinfo=dt.UTC)


def at(**delta: float) -> str:
    return (T0 + dt.timedelta(**delta)).isoformat(timespec="microseconds")


def test_each_default_quota_is_refused_at_its_limit_and_free_after_the_window(engine_):
    for name, limit in quotas.DEFAULTS.items():
        window = quotas.WINDOWS[name.rsplit("_per_", 1)[1]]
        for i in range(limit):
            quotas.use(engine_, config(), name, "user:ada", at=at(seconds=i))
        with pytest.raises(QuotaExceeded) as info:
            quotas.use(engine_, config(), name, "user:ada", at=at(seconds=limit + 1))
        text = str(info.value)
        assert info.value.exit_code == 4
        assert name in text and f"{limit} used" in text and "allowed at" in text
        # another actor has their own count
        quotas.use(engine_, config(), name, "user:bob", at=at(seconds=limit + 1))
        # the first use ages out of the window: one more is allowed
        quotas.use(engine_, config(), name, "user:ada", at=at(seconds=window + 0.5))
    refused = audit.entries(engine_, action="quota.refused")
    assert [e.details["quota"] for e in refused] == list(quotas.DEFAULTS)


def test_the_message_says_when_the_next_one_is_allowed(engine_):
    cfg = config(quotas={"runs_per_hour": 2})
    quotas.use(engine_, cfg, "runs_per_hour", "user:ada", at=at(minutes=0))
    quotas.use(engine_, cfg, "runs_per_hour", "user:ada", at=at(minutes=10))
    with pytest.raises(QuotaExceeded, match=r"allowed at 2026-12-01T08:00:00Z UTC"):
        quotas.use(engine_, cfg, "runs_per_hour", "user:ada", at=at(minutes=20))


def test_uses_at_once_from_several_connections_never_pass_the_limit(gov_store, db_url):
    """Eight threads, each with its own store (own connections), use a quota of 3 at the same
    moment: exactly 3 are counted (on PostgreSQL the count does not see uncommitted rows, so
    engine.store.serialize orders them)."""
    import threading

    from engine.store import Store

    cfg = config(quotas={"runs_per_hour": 3})
    stores = [Store(gov_store.state_dir, db_url) for _ in range(8)]
    barrier = threading.Barrier(len(stores))
    outcomes: list[str] = []

    def use(store: Store) -> None:
        barrier.wait()
        try:
            quotas.use(store.engine, cfg, "runs_per_hour", "user:ada", at=at(seconds=1))
            outcomes.append("counted")
        except QuotaExceeded:
            outcomes.append("refused")

    threads = [threading.Thread(target=use, args=(s,)) for s in stores]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for s in stores:
            s.close()
    assert sorted(outcomes) == ["counted"] * 3 + ["refused"] * 5
    assert quotas.usage(gov_store.engine, cfg, "user:ada", at=at(seconds=2))["runs_per_hour"]["used"] == 3
    assert audit.verify(gov_store.engine).ok  # the refusals' audit entries, appended at once, stay one chain


def test_zero_is_unlimited(engine_):
    cfg = config(quotas={"runs_per_hour": 0})
    for i in range(100):
        quotas.use(engine_, cfg, "runs_per_hour", "user:ada", at=at(seconds=i))


def test_a_batch_counts_as_many(engine_):
    cfg = config(quotas={"emails_per_day": 5})
    quotas.use(engine_, cfg, "emails_per_day", "user:ada", 3, at=at())
    with pytest.raises(QuotaExceeded):
        quotas.use(engine_, cfg, "emails_per_day", "user:ada", 3, at=at(seconds=1))
    quotas.use(engine_, cfg, "emails_per_day", "user:ada", 2, at=at(seconds=2))
    assert quotas.usage(engine_, cfg, "user:ada", at=at(seconds=3))["emails_per_day"] == {
        "limit": 5,
        "used": 5,
        "window": "day",
    }


@pytest.mark.parametrize("value", [-1, "ten", True, 1.5])
def test_a_bad_limit_is_a_config_error(engine_, value):
    with pytest.raises(ConfigError, match="runs_per_hour must be a whole number"):
        quotas.use(engine_, config(quotas={"runs_per_hour": value}), "runs_per_hour", "user:ada")
