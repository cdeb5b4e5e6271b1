"""The Store contract: the in-process store and the Redis store behave alike, to the unit."""

import asyncio
import time

import pytest

from proxy.stages.budget_rules import window_of
from proxy.store import Charge, KeyRecord, Settlement, Store, Totals, fleet_spend
from tests.shared import END_OF_MARCH

NOW = END_OF_MARCH
HOLD = 900.0


def charge(counter: str, amount: int, limit: int | None = 100, ttl: int = 3600) -> Charge:
    return Charge(counter, amount, limit, ttl)


def settled(request_id: str, *counters: tuple[str, int], totals: Totals | None = None) -> Settlement:
    return Settlement(request_id, NOW, tuple((name, amount, 3600) for name, amount in counters), totals)


async def test_reserve_holds_until_the_limit_then_refuses(store: Store) -> None:
    first = await store.reserve("r1", (charge("a", 60),), NOW, NOW + HOLD)
    assert first.ok and first.levels == (0,)
    second = await store.reserve("r2", (charge("a", 41),), NOW, NOW + HOLD)
    assert not second.ok and second.refused == 0 and second.levels == (60,)
    third = await store.reserve("r3", (charge("a", 40),), NOW, NOW + HOLD)
    assert third.ok and third.levels == (60,)


async def test_reserve_is_all_or_nothing_across_counters(store: Store) -> None:
    await store.reserve("big", (charge("team", 95),), NOW, NOW + HOLD)
    refused = await store.reserve("r", (charge("global", 10), charge("team", 10)), NOW, NOW + HOLD)
    assert not refused.ok and refused.refused == 1 and refused.levels == (0, 95)
    # Nothing was held on "global" by the refused reservation.
    after = await store.reserve("r2", (charge("global", 100),), NOW, NOW + HOLD)
    assert after.ok and after.levels == (0,)


async def test_a_counter_without_limit_counts_and_never_refuses(store: Store) -> None:
    assert (await store.reserve("r1", (charge("soft", 500, limit=None),), NOW, NOW + HOLD)).ok
    second = await store.reserve("r2", (charge("soft", 500, limit=None),), NOW, NOW + HOLD)
    assert second.ok and second.levels == (500,)


async def test_settle_replaces_the_hold_with_the_actual_amount(store: Store) -> None:
    await store.reserve("r1", (charge("a", 80), charge("b", 5)), NOW, NOW + HOLD)
    await store.settle(settled("r1", ("a", 30), ("b", 0)))
    probe = await store.reserve("probe", (charge("a", 0), charge("b", 0)), NOW, NOW + HOLD)
    assert probe.levels == (30, 0)


async def test_settle_is_applied_once(store: Store) -> None:
    await store.reserve("r1", (charge("a", 10),), NOW, NOW + HOLD)
    await store.settle(settled("r1", ("a", 7)))
    await store.settle(settled("r1", ("a", 7)))  # a retry after an ambiguous failure
    assert (await store.reserve("probe", (charge("a", 0),), NOW, NOW + HOLD)).levels == (7,)


async def test_release_drops_the_hold_only(store: Store) -> None:
    await store.settle(settled("earlier", ("a", 20)))
    await store.reserve("r1", (charge("a", 50),), NOW, NOW + HOLD)
    await store.release("r1", ["a"])
    assert (await store.reserve("probe", (charge("a", 0),), NOW, NOW + HOLD)).levels == (20,)


async def test_reserving_again_under_the_same_id_replaces_the_hold(store: Store) -> None:
    await store.reserve("r1", (charge("a", 50),), NOW, NOW + HOLD)
    again = await store.reserve("r1", (charge("a", 30),), NOW, NOW + HOLD)
    assert again.ok and again.levels == (0,)
    assert (await store.reserve("probe", (charge("a", 0),), NOW, NOW + HOLD)).levels == (30,)


async def test_abandoned_holds_expire_and_late_settles_still_count(store: Store) -> None:
    await store.reserve("crashed", (charge("a", 90),), NOW, NOW + 10)
    await store.reserve("slow", (charge("a", 10),), NOW, NOW + 10)
    assert not (await store.reserve("r", (charge("a", 1),), NOW + 9.9, NOW + HOLD)).ok
    later = await store.reserve("r", (charge("a", 1),), NOW + 10.5, NOW + HOLD)
    assert later.ok and later.levels == (0,)  # both holds are dead: nothing held any more
    await store.settle(settled("slow", ("a", 4)))  # its hold expired, its spend still counts
    assert (await store.reserve("probe", (charge("a", 0),), NOW + 11, NOW + HOLD)).levels == (5,)


async def test_concurrent_reservations_never_pass_the_limit(store: Store) -> None:
    results = await asyncio.gather(*(
        store.reserve(f"r{i}", (charge("g", 7, limit=100), charge(f"k{i % 3}", 7, limit=1000)), NOW, NOW + HOLD)
        for i in range(60)
    ))
    assert sum(r.ok for r in results) == 14  # 14 * 7 = 98 <= 100 < 105


async def test_fleet_totals_by_model_team_key_and_day(store: Store) -> None:
    def totals(model: str, team: str | None, key: str | None, cost: int | None) -> Totals:
        return Totals("2025-03-31", model, team, key, 10, 5, 2, 1, cost)

    await store.settle(settled("r1", totals=totals("gpt-4o", "support", "bot", 1_000)))
    await store.settle(settled("r2", totals=totals("gpt-4o", "support", None, 500)))
    await store.settle(settled("r3", totals=totals("odd|model", None, None, None)))
    by_model = await store.spend("model", ["2025-03-30", "2025-03-31"])
    assert by_model == [
        {"model": "gpt-4o", "requests": 2, "prompt_tokens": 20, "completion_tokens": 10, "cached_prompt_tokens": 4,
         "cache_write_tokens": 0, "reasoning_tokens": 2, "cost_nanos": 1_500, "unpriced_requests": 0},
        {"model": "odd|model", "requests": 1, "prompt_tokens": 10, "completion_tokens": 5, "cached_prompt_tokens": 2,
         "cache_write_tokens": 0, "reasoning_tokens": 1, "cost_nanos": 0, "unpriced_requests": 1},
    ]
    assert [(r["team"], r["cost_nanos"]) for r in await store.spend("team", ["2025-03-31"])] == [
        ("support", 1_500), (None, 0)]
    assert [(r["key"], r["requests"]) for r in await store.spend("key", ["2025-03-31"])] == [("bot", 1), (None, 2)]
    rows, first_day = await fleet_spend(store, "day", NOW - 3 * 86400, NOW)
    assert [(r["day"], r["requests"]) for r in rows] == [("2025-03-31", 3)]
    assert first_day == 1743120000.0  # 2025-03-28 00:00 UTC
    with pytest.raises(ValueError):
        await fleet_spend(store, "user", None, NOW)


async def test_keys_are_found_by_hash_and_revoked(store: Store) -> None:
    record = KeyRecord("bot", "support", "ab" * 32, created_at=time.time(), budget_nanos_per_day=20_000_000_000)
    assert await store.add_key(record)
    assert not await store.add_key(KeyRecord("bot", "other", "cd" * 32, created_at=time.time()))
    assert await store.key_by_hash("ab" * 32) == record
    assert await store.key_by_hash("cd" * 32) is None
    revoked = await store.revoke_key("bot", 123.0)
    assert revoked.revoked_at == 123.0 and (await store.revoke_key("bot", 456.0)).revoked_at == 123.0
    assert (await store.key_by_hash("ab" * 32)).revoked_at == 123.0
    assert [k.id for k in await store.keys()] == ["bot"]
    assert await store.revoke_key("nobody", 1.0) is None


@pytest.mark.parametrize("window,now,expected", [
    ("minute", END_OF_MARCH + 59.999, ("202503312359", END_OF_MARCH, END_OF_MARCH + 60)),
    ("minute", END_OF_MARCH + 60, ("202504010000", END_OF_MARCH + 60, END_OF_MARCH + 120)),
    ("hour", END_OF_MARCH, ("2025033123", END_OF_MARCH - 59 * 60, END_OF_MARCH + 60)),
    ("day", END_OF_MARCH + 60, ("20250401", END_OF_MARCH + 60, END_OF_MARCH + 60 + 86400)),
    ("month", END_OF_MARCH, ("202503", 1740787200.0, END_OF_MARCH + 60)),
    ("month", 1733011199.0, ("202411", 1730419200.0, 1733011200.0)),  # 2024-11-30 23:59:59
    ("month", 1735689599.0, ("202412", 1733011200.0, 1735689600.0)),  # December rolls into a new year
])
def test_windows_are_calendar_aligned_utc(window: str, now: float, expected: tuple) -> None:
    assert window_of(window, now) == expected


@pytest.mark.parametrize("amount", [0, 1], ids=["zero", "tiny"])
async def test_zero_and_tiny_reservations_settle_and_still_count_tokens_and_requests(store: Store, amount: int) -> None:
    """An unpriced model, a model priced 0 or an empty embeddings input reserves 0 dollars; its
    tokens and requests still count, and settling it leaves nothing held (issue 10, item 2)."""
    charges = (charge("usd", amount), charge("tokens", 40, limit=100), charge("requests", 1, limit=3))
    for request_id in ("r1", "r2"):
        assert (await store.reserve(request_id, charges, NOW, NOW + HOLD)).ok
        await store.settle(settled(request_id, ("usd", 0), ("tokens", 30), ("requests", 1)))
    probe = await store.reserve("probe", (charge("usd", 0), charge("tokens", 0), charge("requests", 0)), NOW, NOW + HOLD)
    assert probe.ok and probe.levels == (0, 60, 2)  # nothing left held: a third request for 40 tokens fits
    assert (await store.reserve("r3", charges, NOW, NOW + HOLD)).ok


async def test_a_settle_without_any_reservation_counts(store: Store) -> None:
    """A request answered by a policy before it reserved (a cache hit) is counted, never held."""
    await store.settle(settled("hit", ("usd", 0), ("tokens", 12), ("requests", 1)))
    probe = await store.reserve("probe", (charge("usd", 0), charge("tokens", 0), charge("requests", 0)), NOW, NOW + HOLD)
    assert probe.levels == (0, 12, 1)


async def test_the_settled_total_is_told_once_written_and_a_negative_settle_gives_back(store: Store) -> None:
    """What budget alerts follow: the counter's settled total (never its holds), once the store has written it;
    a Batch API job's ceiling settled, then the difference to its real cost given back."""
    told: list[tuple[str, int]] = []
    store.on_settled(lambda counter, settled: told.append((counter, settled)))
    await store.reserve("r1", (charge("a", 30),), NOW, NOW + HOLD)
    await store.settle(settled("r1", ("a", 20)))
    await store.reserve("job", (charge("a", 50),), NOW, NOW + HOLD)
    await store.settle(settled("job", ("a", 50)))
    await store.settle(settled("job/priced", ("a", -35)))
    await store.flush()
    assert told[-1] == ("a", 35) and all(0 <= value <= 70 for _, value in told)
    probe = await store.reserve("probe", (charge("a", 65),), NOW, NOW + HOLD)
    assert probe.ok and probe.levels == (35,)
    assert not (await store.reserve("more", (charge("a", 1),), NOW, NOW + HOLD)).ok  # 35 settled + 65 held
