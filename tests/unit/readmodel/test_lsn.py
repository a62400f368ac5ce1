"""LSNs: PostgreSQL's 'high/low' spelling and byte positions."""

from __future__ import annotations

import pytest

from readmodel.lsn import format_lsn, parse_lsn


@pytest.mark.parametrize("lsn", ["0/0", "0/16B3748", "16/B374D848", "FFFFFFFF/FFFFFFFF"])
def test_an_lsn_round_trips_through_its_position(lsn: str) -> None:
    assert format_lsn(parse_lsn(lsn)) == lsn


def test_positions_order_like_the_wal() -> None:
    assert parse_lsn("0/FFFFFFFF") < parse_lsn("1/0") < parse_lsn("1/1") < parse_lsn("A/0")


@pytest.mark.parametrize(
    "bad",
    ["", "/", "16", "16/", "/B3", "xyz/1", "1/2/3", "123456789/0", "-1/0", "+1/0", " 1/2", "1/2\n"],
)
def test_anything_else_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_lsn(bad)
