"""Beat's scheduler: django-celery-beat's DatabaseScheduler behind a leader lease in Redis.

Any number of beat processes may run; only the one holding the lease sends due tasks, so each
periodic task runs once per interval (CONTRACT §5). The others stand by and take over once
the leader's lease expires (it died) or is released (it shut down cleanly).

Written here because no well-kept library does this for the DatabaseScheduler: celery-redbeat
moves the schedule into Redis, and the contract keeps it in the database, editable in the
admin; process wrappers (single-beat) elect one beat but start the next from the last_run_at
that beat saved (every few minutes), so a takeover re-sends what the old leader just sent.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import uuid
from typing import Any

import redis
from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.db import DatabaseError, InterfaceError, close_old_connections
from django_celery_beat.schedulers import DatabaseScheduler, ModelEntry
from redis.backoff import NoBackoff
from redis.retry import Retry

logger = logging.getLogger(__name__)

LEASE_KEY = "syncplatform:beat:leader"
# How often a standby asks for the lease: it takes over at most this long after the lease
# expires. One small Redis call a second per standby.
STANDBY_POLL_SECONDS = 1.0
# A lease call answers in about a millisecond; one slower than this counts as a broker outage.
REDIS_TIMEOUT_SECONDS = 2.0

# Take the lease when it is free, renew it when it is ours; answer who holds it.
_CLAIM = """
local holder = redis.call('GET', KEYS[1])
if not holder or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
return holder
"""
# Delete the lease only if it is still ours: a late release must not free a successor's.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Lease:
    """A Redis key naming the one beat process that may send; it expires unless renewed."""

    def __init__(self, url: str, seconds: float) -> None:
        self.seconds = seconds
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # Fail fast, retrying once on a fresh connection (a pooled one dies with a Redis
        # restart): a renewal stuck for long is worth less than handing over to a standby.
        timeout = min(REDIS_TIMEOUT_SECONDS, seconds / 4)
        self._client = redis.Redis.from_url(
            url,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
        )
        self._claim = self._client.register_script(_CLAIM)
        self._release = self._client.register_script(_RELEASE)

    def claim(self) -> str:
        """Take or renew the lease if we can; return its holder's token (ours when held)."""
        holder = self._claim(keys=[LEASE_KEY], args=[self.token, int(self.seconds * 1000)])
        return holder.decode()

    def release(self) -> None:
        self._release(keys=[LEASE_KEY], args=[self.token])


class LeaderScheduler(DatabaseScheduler):
    """DatabaseScheduler that sends due tasks only while this process holds the lease.

    Invariants: every send happens right after a successful renewal and after its run is
    saved to the database (a successor starts from that last_run_at, so it never re-sends it);
    a process that becomes leader reloads the schedule from the database first; a standby
    writes no schedule state.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._lease: Lease | None = None
        self._leading = False
        self._renewed_at = 0.0  # monotonic time before the last successful claim was sent
        self._holder: str | None = None  # last holder logged, to log each change once
        self._broker_down = False
        super().__init__(*args, **kwargs)
        # Renew well before the lease runs out, whatever beat's max loop interval is.
        self.max_interval = min(self.max_interval, settings.BEAT_LEASE_SECONDS / 3)

    @property
    def lease(self) -> Lease:
        # Made on first use: `celery beat` also builds a lazy scheduler just for its banner.
        if self._lease is None:
            self._lease = Lease(settings.CELERY_BROKER_URL, settings.BEAT_LEASE_SECONDS)
        return self._lease

    @property
    def info(self) -> str:
        return f"    . leader lease -> {LEASE_KEY} ({settings.BEAT_LEASE_SECONDS} s)"

    def tick(self, *args: Any, **kwargs: Any) -> float:
        if not self._hold_lease():
            return min(STANDBY_POLL_SECONDS, self.max_interval)
        return super().tick(*args, **kwargs)

    def apply_entry(self, entry: ModelEntry, producer: Any = None) -> None:
        """Renew, save the run, check the lease is still fresh, then send."""
        if not self._hold_lease():
            logger.warning("beat: not sending %s: no longer the leader", entry.name)
            return
        self._save_run(entry)
        if time.monotonic() - self._renewed_at >= self.lease.seconds / 2:
            # Saving took so long that the lease may run out before the message is out, and
            # a successor may send it too: skip this run rather than risk sending it twice.
            logger.error("beat: not sending %s: saving it took too long", entry.name)
            self._step_down()
            return
        super().apply_entry(entry, producer=producer)

    def reserve(self, entry: ModelEntry) -> ModelEntry:
        new_entry = super().reserve(entry)
        # DatabaseScheduler leaves the old entry in the schedule, with the previous run's
        # last_run_at; a heap rebuilt from it (after any schedule change) would send this
        # run a second time.
        if new_entry.name in self._schedule:
            self._schedule[new_entry.name] = new_entry
        return new_entry

    def _save_run(self, entry: ModelEntry) -> None:
        """Write the run reserve() just recorded on entry.model (last_run_at, run count)."""
        try:
            close_old_connections()
            entry.save()
        except (DatabaseError, InterfaceError, ObjectDoesNotExist) as exc:
            # Sent all the same, as beat always does; saved again at the next sync.
            logger.error(
                "beat: could not save the run of %s before sending it: %s", entry.name, exc
            )
        else:
            self._dirty.discard(entry.name)

    def sync(self) -> None:
        # Only the leader writes last_run_at: a stale process must not roll it back.
        if not self._leading:
            self._dirty.clear()
            return
        super().sync()

    def close(self) -> None:
        """Save, then hand the lease over at once instead of letting it expire."""
        try:
            super().close()
        finally:
            if self._leading:
                self._step_down()
                try:
                    self.lease.release()
                    logger.info("beat: released the leader lease")
                except redis.RedisError as exc:
                    logger.warning("beat: could not release the leader lease: %s", exc)

    def _hold_lease(self) -> bool:
        """Claim or renew the lease; on becoming leader, reload the schedule first."""
        started = time.monotonic()
        try:
            holder = self.lease.claim()
        except redis.RedisError as exc:
            self._on_broker_error(exc)
            return False
        if self._broker_down:
            self._broker_down = False
            logger.info("beat: broker reachable again")
        if holder != self.lease.token:
            self._on_standby(holder)
            return False
        self._renewed_at = started
        return self._leading or self._become_leader()

    def _become_leader(self) -> bool:
        # The previous leader saved each run before sending it: start from the database,
        # not from what this process read when it started.
        try:
            close_old_connections()  # the database may have restarted while standing by
            self._schedule = self.all_as_schedule()
        except (DatabaseError, InterfaceError) as exc:
            logger.error("beat: holding the lease but cannot read the schedule: %s", exc)
            # Let a beat process that can read it lead instead.
            with contextlib.suppress(redis.RedisError):
                self.lease.release()
            return False
        self._dirty.clear()
        self._heap = None  # rebuilt from the reloaded entries on this tick
        self._leading = True
        self._holder = self.lease.token
        logger.info(
            "beat: leader (lease %s held by %s); sending due tasks",
            LEASE_KEY,
            self.lease.token,
        )
        return True

    def _on_standby(self, holder: str) -> None:
        if self._leading:
            logger.warning("beat: lost the leader lease to %s; standing by", holder)
            self._step_down()
        elif holder != self._holder:
            logger.info("beat: standby; %s holds the leader lease and sends due tasks", holder)
        self._holder = holder

    def _on_broker_error(self, exc: redis.RedisError) -> None:
        if not self._broker_down:
            logger.error(
                "beat: cannot reach the broker to hold the leader lease (%s); "
                "sending nothing until it is back",
                exc,
            )
        self._broker_down = True
        self._holder = None
        self._step_down()

    def _step_down(self) -> None:
        self._leading = False
        self._dirty.clear()
