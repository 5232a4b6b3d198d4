"""The engine's doorbell gathers wake-ups under load and wakes an idle engine at once (no real time:
a stand-in clock and sleep)."""

from __future__ import annotations

from connector.commands.composition import Doorbell


class StandInTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 9))
        self.now += seconds


def doorbell(clock: StandInTime) -> Doorbell:
    return Doorbell(0.001, monotonic=clock.monotonic, sleep=clock.sleep)


def test_an_idle_engine_is_woken_at_once() -> None:
    clock = StandInTime()
    bell = doorbell(clock)
    bell.ring()
    bell.wait(5.0)  # the first wait: nothing to gather
    assert clock.slept == []
    clock.now += 0.5  # a quiet stream: the last wake-up is long past
    bell.ring()
    bell.wait(5.0)
    assert clock.slept == []


def test_under_load_the_engine_wakes_at_most_once_per_gather_interval() -> None:
    clock = StandInTime()
    bell = doorbell(clock)
    bell.ring()
    bell.wait(5.0)
    clock.now += 0.0003  # a step took 0.3 ms; responses keep coming
    bell.ring()
    bell.wait(5.0)
    assert clock.slept == [0.0007], "the rest of the millisecond, then the rung bell answers at once"
    clock.now += 0.002  # a long step: nothing to wait out
    bell.ring()
    bell.wait(5.0)
    assert clock.slept == [0.0007]


def test_a_short_wait_is_not_stretched_by_the_gathering() -> None:
    clock = StandInTime()
    bell = doorbell(clock)
    bell.wait(0.0)
    bell.wait(0.0002)  # the engine asked to look again within 0.2 ms: it does
    assert clock.slept == [0.0002]
