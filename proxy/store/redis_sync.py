"""One sync with Redis as the SYNC script (store/redis_scripts.py) takes it: which counters go, the keys and
arguments that carry the waiting batch, the leases to grow, renew or give back; then what Redis answered,
applied to the lease book. No I/O here: store/redis.py makes the call, under its lock."""

import math
from dataclasses import dataclass

import orjson

from proxy.store import SPEND_RETENTION_SECONDS
from proxy.store.leases import Batch, LeaseBook

# A replica replays an unconfirmed batch when Redis answers again; its mark outlives such an outage.
BATCH_MARK_SECONDS = 86400


@dataclass(slots=True)
class SyncCall:
    names: list[str]  # the counters in this sync, in the script's order
    batch: Batch | None
    keys: list[str]
    args: list


def sync_call(book: LeaseBook, key, lease_id: str, lease_seconds: float, now: float, short: dict[str, int],
              closing: bool) -> SyncCall | None:
    """The script's keys and arguments (`key(kind, name)` spells a Redis key); None when nothing needs a sync.
    `short`: counters whose lease must grow to that outstanding amount."""
    batch = book.next_batch()
    # Only the counters this sync is about: the batch's, the short ones, the leases due (in this order, once each).
    names = list(dict.fromkeys([*(batch.counters if batch else ()), *short,
                                *book.to_renew(now, lease_seconds, closing)]))
    if not names and batch is None:
        return None
    keys = [key("c:", name) for name in names] + [key("z:", name) for name in names]
    keys.append(key("s:", lease_id))
    days = list(batch.totals) if batch else []
    keys += [key("spend:", day) for day in days]
    args: list = [lease_id, repr(now), repr(now + lease_seconds), batch.number if batch else 0,
                  BATCH_MARK_SECONDS, SPEND_RETENTION_SECONDS, len(names), len(days)]
    for name in names:
        c = book.counters[name]
        idle = closing or not c.touched
        # The script takes the batch's usage out of the lease before it grows it.
        required = short[name] - c.sending if name in short else -1
        args += [c.sending, required, -1 if c.limit is None else c.limit,
                 max(math.ceil(c.expires_at - now), 1), c.unit, c.holds.held + c.unflushed if idle else -1]
    for day in days:
        fields = batch.totals[day]
        args.append(orjson.dumps([text for field, amount in fields.items() for text in (field, str(amount))]))
    return SyncCall(names, batch, keys, args)


def distrust(book: LeaseBook, call: SyncCall) -> None:
    """The call failed: what Redis did is unknown, so each counter asks again before its lease is used."""
    for name in call.names:
        book.counters[name].trusted_until = 0.0
    book.renew_check_at = 0.0  # their leases are looked at again at the next sync


def apply_result(book: LeaseBook, call: SyncCall, result: list, now: float, lease_seconds: float,
                 short: dict[str, int], on_settled) -> str | None:
    """Redis's answer: the batch is confirmed, each counter's base and lease as Redis holds them; `on_settled`
    hears each counter's used amount (every replica's batches). Returns the counter that refused to grow."""
    book.confirm(call.batch)
    names, n = call.names, len(call.names)
    for i, name in enumerate(names):
        c = book.counters[name]
        c.base, c.lease = int(result[1 + i]), int(result[1 + n + i])
        c.trusted_until = now + lease_seconds * 0.75 if c.lease else 0.0
        if c.lease:
            book.renewed_until(c.trusted_until, lease_seconds)
        if name not in short:
            c.touched = False
        if on_settled is not None:
            on_settled(name, int(result[1 + 2 * n + i]))
    refused = int(result[0])
    return names[refused - 1] if refused else None
