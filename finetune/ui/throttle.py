"""Slows down repeated failed sign-ins, per client address and per account; never locks anyone out for good.

    (used by finetune/ui/gate.py on POST /login; tested by tests/ui/test_login_throttle.py)
    .venv/bin/pytest tests/ui/test_login_throttle.py -q

Each key (a client address, an account name) gets ``free`` attempts in a row at full speed; after that each
attempt must wait twice as long as the one before (1 s, 2 s, 4 s ... at most ``max_wait``). A key is
forgotten ``forget_after`` seconds after its last attempt, and a successful sign-in clears the client and
the account at once, so the owner waits at most ``max_wait`` however many guesses were made against them.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass

FREE = 5  # a typo or two, a forgotten caps lock: no wait at all
FIRST_WAIT = 1.0  # seconds after the last free attempt; doubles with each further one
MAX_WAIT = 300.0  # the longest the owner can be kept waiting: five minutes
FORGET_AFTER = 900.0  # a key with no attempt for 15 minutes starts afresh
MAX_KEYS = 10_000  # about a megabyte; past it the key tried least recently is dropped


@dataclass
class _Record:
    attempts: int = 0
    last: float = 0.0  # clock time of the last counted attempt
    until: float = 0.0  # no attempt is admitted before this clock time


class Throttle:
    """Thread-safe count of sign-in attempts per key; :meth:`attempt` says how long a key must still wait."""

    def __init__(
        self,
        free: int = FREE,
        first_wait: float = FIRST_WAIT,
        max_wait: float = MAX_WAIT,
        forget_after: float = FORGET_AFTER,
        max_keys: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.free, self.first_wait, self.max_wait = free, first_wait, max_wait
        self.forget_after, self.max_keys, self.clock = forget_after, max_keys, clock
        self._records: OrderedDict[Hashable, _Record] = OrderedDict()  # least recently tried first
        self._lock = threading.Lock()

    def attempt(self, keys: Iterable[Hashable]) -> float:
        """Seconds until ``keys`` may try again; 0.0 means go ahead, and the attempt is then counted.

        An admitted attempt counts as a failure until :meth:`succeeded` clears it, so a burst of parallel
        guesses cannot all slip through before the first of them is answered.
        """
        keys = list(keys)
        with self._lock:
            now = self.clock()
            self._forget(now)
            wait = max((self._records[k].until - now for k in keys if k in self._records), default=0.0)
            if wait > 0:
                return wait
            for key in keys:
                record = self._records.pop(key, None) or _Record()
                record.attempts += 1
                record.last, record.until = now, now + self.backoff(record.attempts)
                self._records[key] = record  # re-inserted last: the order stays by last attempt
            while len(self._records) > self.max_keys:
                self._records.popitem(last=False)
            return 0.0

    def succeeded(self, keys: Iterable[Hashable]) -> None:
        """Forget ``keys``: the right password ends every wait it was under."""
        with self._lock:
            for key in keys:
                self._records.pop(key, None)

    def attempts(self, key: Hashable) -> int:
        """Attempts in a row counted against ``key`` (0 once forgotten)."""
        with self._lock:
            self._forget(self.clock())
            record = self._records.get(key)
            return record.attempts if record else 0

    def backoff(self, attempts: int) -> float:
        """The wait after the ``attempts``-th attempt in a row: none for the free ones, then doubling."""
        if attempts < self.free:
            return 0.0
        return min(self.first_wait * 2.0 ** min(attempts - self.free, 64), self.max_wait)

    def _forget(self, now: float) -> None:
        while self._records:
            oldest = next(iter(self._records.values()))
            if now - oldest.last < self.forget_after or now < oldest.until:
                return
            self._records.popitem(last=False)


def keys_for(client: str, username: str) -> tuple[tuple[str, str], tuple[str, str]]:
    """The client's key and the account's; the name as Gradio compares it (stripped), in any letter case."""
    return ("client", client), ("user", username.strip().casefold())


def retry_after(wait: float) -> int:
    """Whole seconds for a Retry-After header: rounded up, so a client that obeys it is never refused."""
    return max(1, math.ceil(wait))
