"""One jittered, capped, growing delay for every retry and reconnect loop
(sources dialling, the MQTT publisher, the service restarting a source, the
InfluxDB sink retrying a batch)."""

from __future__ import annotations

import random


class Backoff:
    """``next()`` gives the delay before the next attempt: exponential from
    ``initial`` up to ``maximum``, with "full jitter" (uniform between half and
    all of it), so many clients that lost the same server do not return
    together.  ``reset()`` after a success.  ``rng`` may be a seeded
    ``random.Random`` for tests.

    The exponent stops growing once the cap is reached, so an outage of any
    length never overflows the float arithmetic."""

    def __init__(self, initial: float = 0.5, maximum: float = 30.0, factor: float = 2.0,
                 rng: random.Random | None = None) -> None:
        if initial <= 0 or maximum < initial or factor < 1:
            raise ValueError("backoff needs 0 < initial <= maximum and factor >= 1")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.attempts = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        ceiling = self.initial * self.factor ** self.attempts
        if ceiling >= self.maximum:
            ceiling = self.maximum  # capped: the exponent need not grow further
        else:
            self.attempts += 1
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempts = 0
