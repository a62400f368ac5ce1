"""Dynamic client registration attacks against the real backend process on the real primary: a
flood of large registrations, many small ones from one address, clients that never log in,
hostile redirect URIs, an open redirect through /authorize, and a client name that lies."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import httpx
import pytest

from backend.oauth.registration import CLIENT_NAME_MAX
from shared.settings import Settings
from taskgate.pgpair import PgPair, free_port
from tests.support.oauth import authorize_params, hidden_field, pkce_pair
from tests.support.processes import running_backend

REGISTER = "/register"
AUTHORIZE = "/authorize"
LOOPBACK = "http://127.0.0.1:4567/callback"


def _metadata(redirect_uri: str = LOOPBACK, **extra: object) -> dict[str, object]:
    return {"redirect_uris": [redirect_uri], "token_endpoint_auth_method": "none", **extra}


def _unverified(pg_pair: PgPair) -> int:
    return int(
        pg_pair.psql(
            "SELECT count(*) FROM oauth_clients c WHERE NOT EXISTS (SELECT 1 FROM oauth_codes o "
            "WHERE o.client_id = c.client_id) AND NOT EXISTS (SELECT 1 FROM oauth_refresh_tokens "
            "r WHERE r.client_id = c.client_id)"
        )
    )


def _bytes_of_clients(pg_pair: PgPair) -> int:
    return int(pg_pair.psql("SELECT coalesce(sum(pg_column_size(info)), 0) FROM oauth_clients"))


@pytest.fixture(scope="module")
def throttled(settings: Settings) -> Iterator[str]:
    """A backend with the registration limits at their defaults (the suite turns them off)."""
    env = {"DATABASE_URL": settings.database_url, "OAUTH_REGISTRATIONS_PER_HOUR": "30"}
    with running_backend(env) as url:
        yield url


def test_a_flood_of_large_registrations_stores_nothing(throttled: str, pg_pair: PgPair) -> None:
    before = _bytes_of_clients(pg_pair)
    big = json.dumps(_metadata(client_name="x" * 60_000)).encode()
    with httpx.Client(base_url=throttled, timeout=30) as http:
        replies = [
            http.post(REGISTER, content=big, headers={"Content-Type": "application/json"})
            for _ in range(200)
        ]
    assert {r.status_code for r in replies} == {413}
    assert replies[0].json()["status"] == "error"
    assert _bytes_of_clients(pg_pair) == before


def test_registrations_from_one_address_are_limited(throttled: str, pg_pair: PgPair) -> None:
    with httpx.Client(base_url=throttled, timeout=30) as http:
        replies = [http.post(REGISTER, json=_metadata()) for _ in range(40)]
    statuses = [r.status_code for r in replies]
    default_burst = Settings(_env_file=None).oauth_registration_burst
    assert statuses.count(201) == default_burst and statuses.count(429) == 40 - default_burst
    refused = replies[-1]
    assert refused.json()["error_code"] == "rate_limited"
    assert refused.headers["Retry-After"] == str(refused.json()["details"]["retry_after_seconds"])


def test_clients_that_never_log_in_are_capped(settings: Settings, pg_pair: PgPair) -> None:
    # Earlier tests' clients are all made recent: in a long session (a busy machine) some are
    # past their grace, and the cap would rightly drop them to make more room than counted here.
    pg_pair.psql("UPDATE oauth_clients SET created_at = now()")
    room = 20
    cap = _unverified(pg_pair) + room
    env = {
        "DATABASE_URL": settings.database_url,
        "OAUTH_UNVERIFIED_CLIENTS_MAX": str(cap),
        "OAUTH_REGISTRATIONS_PER_HOUR": "0",
    }
    with running_backend(env) as url, httpx.Client(base_url=url, timeout=30) as http:
        statuses = [http.post(REGISTER, json=_metadata()).status_code for _ in range(room + 10)]
        assert statuses.count(201) == room and statuses.count(429) == 10, statuses
        assert _unverified(pg_pair) == cap
        # Once the oldest had their chance (their login pages expired), newcomers take their place.
        pg_pair.psql("UPDATE oauth_clients SET created_at = created_at - interval '1 hour'")
        assert http.post(REGISTER, json=_metadata()).status_code == 201
        assert _unverified(pg_pair) == cap


@pytest.fixture(scope="module")
def open_backend(settings: Settings) -> Iterator[str]:
    """A backend whose OAuth issuer is its own URL, so /authorize sends to its login page."""
    port = free_port()
    env = {"DATABASE_URL": settings.database_url, "BACKEND_PUBLIC_URL": f"http://127.0.0.1:{port}"}
    with running_backend(env, port=port) as url:
        yield url


@pytest.mark.parametrize(
    "uri",
    [
        "ws://127.0.0.1:4567/callback",
        "https://google.com@evil.example/callback",
        "https://client.example/callback#fragment",
        "http://127.0.0.1:4567/callback#",
        "myapp://callback",
        "http://client.example/callback",
        "javascript:alert(1)",
    ],
)
def test_hostile_redirect_uris_are_refused(open_backend: str, uri: str) -> None:
    with httpx.Client(base_url=open_backend, timeout=30) as http:
        reply = http.post(REGISTER, json=_metadata(uri))
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"] in ("invalid_redirect_uri", "invalid_client_metadata")


def _client(http: httpx.Client, redirect_uri: str, **extra: object) -> str:
    reply = http.post(REGISTER, json=_metadata(redirect_uri, **extra))
    assert reply.status_code == 201, reply.text
    return str(reply.json()["client_id"])


def test_authorize_is_no_open_redirect_for_a_client_nobody_logged_in_through(
    open_backend: str,
) -> None:
    evil = "https://evil.example/callback"
    with httpx.Client(base_url=open_backend, timeout=30) as http:
        client_id = _client(http, evil)
        _, challenge = pkce_pair()
        bad_scope = {**authorize_params(client_id, evil, challenge, None, "s"), "scope": "\x01"}
        no_pkce = authorize_params(client_id, evil, challenge, None, "s")
        del no_pkce["code_challenge"]
        for params in (bad_scope, no_pkce):
            reply = http.get(AUTHORIZE, params=params)
            assert reply.status_code == 400, reply.text
            assert "Location" not in reply.headers
            assert reply.json()["status"] == "error"


def test_a_fragment_is_never_accepted_even_on_another_loopback_port(open_backend: str) -> None:
    with httpx.Client(base_url=open_backend, timeout=30) as http:
        client_id = _client(http, LOOPBACK)
        _, challenge = pkce_pair()
        for target in ("http://127.0.0.1:9999/callback#frag", f"{LOOPBACK}#frag"):
            params = authorize_params(client_id, target, challenge, None, "s")
            reply = http.get(AUTHORIZE, params=params)
            assert reply.status_code == 400, (target, reply.text)
            assert "Location" not in reply.headers


def test_the_login_page_shows_the_name_without_hidden_characters_and_the_host_plainly(
    open_backend: str,
) -> None:
    lying_name = "Claude\u202e\u200bdesktop\u2066 app\u0007"
    homograph = "https://\u0430pple.com/callback"  # a Cyrillic "a"
    with httpx.Client(base_url=open_backend, timeout=30) as http:
        client_id = _client(http, homograph, client_name=lying_name)
        _, challenge = pkce_pair()
        params = authorize_params(client_id, homograph, challenge, None, secrets.token_hex(4))
        start = http.get(AUTHORIZE, params=params)
        assert start.status_code == 302, start.text
        page = http.get(start.headers["Location"]).text
    assert hidden_field(page, "request")
    assert "<b>Claudedesktop app</b>" in page
    for hidden in ("\u202e", "\u200b", "\u2066", "\u0007"):
        assert hidden not in page
    assert "<b>https://xn--pple-43d.com</b>" in page, page


@pytest.mark.parametrize(
    "metadata",
    [
        {"redirect_uris": [f"http://127.0.0.1:4567/callback{n}" for n in range(11)]},
        {"redirect_uris": [f"{LOOPBACK}?pad={'a' * 2100}"]},
        {"redirect_uris": [LOOPBACK], "client_uri": f"https://client.example/{'a' * 2100}"},
    ],
    ids=["eleven redirect URIs", "a redirect URI over 2048", "a client_uri over 2048"],
)
def test_registration_fields_over_their_bounds_are_refused(
    open_backend: str, pg_pair: PgPair, metadata: dict[str, object]
) -> None:
    before = _bytes_of_clients(pg_pair)
    with httpx.Client(base_url=open_backend, timeout=30) as http:
        reply = http.post(REGISTER, json={**metadata, "token_endpoint_auth_method": "none"})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"] == "invalid_client_metadata"
    assert _bytes_of_clients(pg_pair) == before


def test_a_long_client_name_is_stored_cut_to_its_bound(open_backend: str, pg_pair: PgPair) -> None:
    with httpx.Client(base_url=open_backend, timeout=30) as http:
        client_id = _client(http, LOOPBACK, client_name="n" * 5000)  # under the body's bound
    stored = pg_pair.psql(
        f"SELECT info->>'client_name' FROM oauth_clients WHERE client_id = '{client_id}'"
    )
    assert stored == "n" * CLIENT_NAME_MAX
