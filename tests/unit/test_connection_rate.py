"""The per-address new-connection rate (taskgate/connection_rate.py), on a fake clock."""

from __future__ import annotations

from taskgate.connection_rate import NewConnectionRate, client_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_address_gets_its_burst_then_its_rate_and_others_are_untouched() -> None:
    clock = Clock()
    rate = NewConnectionRate(per_second=10, burst=5, clock=clock)
    assert [rate.admits("10.0.0.1") for _ in range(6)] == [True] * 5 + [False]
    assert rate.admits("10.0.0.2")  # another address has its own allowance
    clock.now += 0.1  # one interval: one more
    assert [rate.admits("10.0.0.1") for _ in range(2)] == [True, False]
    clock.now += 0.5  # a refused connection was not counted: five more
    assert sum(rate.admits("10.0.0.1") for _ in range(10)) == 5


def test_the_table_is_bounded_and_forgets_addresses_whose_allowance_is_whole() -> None:
    clock = Clock()
    rate = NewConnectionRate(per_second=1, burst=2, entries=3, clock=clock)
    for n in range(10):
        assert rate.admits(f"10.0.0.{n}")
        assert len(rate) <= 3
    clock.now += 0.5
    rate.forget_idle()
    assert len(rate) == 3  # each still owes 1 s
    clock.now += 0.5
    rate.forget_idle()
    assert len(rate) == 0


def test_an_ipv6_client_is_counted_by_its_64_and_a_mapped_ipv4_one_as_ipv4() -> None:
    assert client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff::9")
    assert client_key("2001:db8:1:2::1") != client_key("2001:db8:1:3::1")
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_key("192.0.2.7") == "192.0.2.7"
