"""Login and sign-up attacks against the real backend behind the shipped edge proxy (nginx with
deploy/nginx/taskgate.conf.template, the backend trusting it as deploy/k8s/config.yaml says):
failed logins from one address, a re-armed back-off, a browser that logged in before, a sign-up
flood, and sign-ups that would starve logins of argon2. Each client connects from its own
loopback address, so the proxy sees real, distinct client addresses."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from shared.api import OAUTH_AUTHORIZE_PATH, OAUTH_REGISTER_PATH
from shared.settings import Settings
from tests.support.agents import Agent, sign_up
from tests.support.edge_proxy import running_edge_proxy
from tests.support.oauth import authorize_params, pkce_pair, submit_login
from tests.support.processes import running_backend

ROOT = Path(__file__).resolve().parents[2]
LOGIN = "/api/v1/auth/token"
SIGN_UP = "/api/v1/users"
ATTACKER, VICTIM = "127.0.0.2", "127.0.0.3"
REDIRECT_URI = "http://127.0.0.1:33418/callback"  # an MCP client's loopback listener


def _k8s_trusted_proxies() -> str:
    docs = yaml.safe_load_all((ROOT / "deploy/k8s/config.yaml").read_text())
    (config,) = [d for d in docs if d and d["kind"] == "ConfigMap"]
    return str(config["data"]["TRUSTED_PROXIES"])


def client_from(address: str, base_url: str) -> httpx.Client:
    """A client whose connections come from `address` (any 127.x address on Linux)."""
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=base_url, transport=transport, timeout=60)


@pytest.fixture(scope="module")
def proxied_backend(settings: Settings) -> Iterator[tuple[str, str]]:
    """(proxy URL, backend URL): the backend behind the shipped nginx, trusting it alone."""
    env = {
        "DATABASE_URL": settings.database_url,
        "TRUSTED_PROXIES": _k8s_trusted_proxies(),
        "LOGIN_BACKOFF_SECONDS": "1",
        "LOGIN_BACKOFF_MAX_SECONDS": "3",
        "SIGNUP_ADDRESS_BURST": "5",
        "SIGNUP_ADDRESS_PER_HOUR": "1",
    }
    with running_backend(env) as backend_url:
        upstream = backend_url.removeprefix("http://")
        with running_edge_proxy(upstream) as proxy_url:
            yield proxy_url, backend_url


def _login(http: httpx.Client, email: str, password: str) -> httpx.Response:
    # A forged X-Forwarded-For: the proxy replaces it with the address it saw.
    headers = {"X-Forwarded-For": f"198.51.100.{uuid.uuid4().int % 250}"}
    return http.post(LOGIN, data={"username": email, "password": password}, headers=headers)


def _new_user(proxy_url: str, address: str) -> Agent:
    with client_from(address, proxy_url) as http:
        email = f"user-{uuid.uuid4().hex[:12]}@example.com"
        password = uuid.uuid4().hex
        created = http.post(SIGN_UP, json={"email": email, "password": password})
        assert created.status_code == 201, created.text
        return Agent(int(created.json()["id"]), email, password, "", "")


def test_failed_logins_from_one_address_never_lock_out_another_behind_the_proxy(
    proxied_backend: tuple[str, str],
) -> None:
    proxy_url, _ = proxied_backend
    victim = _new_user(proxy_url, VICTIM)
    with client_from(ATTACKER, proxy_url) as attacker:
        statuses = [
            _login(attacker, f"guess-{n}@example.com", "wrong").status_code for n in range(60)
        ]
    assert statuses[:50] == [401] * 50 and 429 in statuses[50:], statuses
    with client_from(VICTIM, proxy_url) as http:
        assert _login(http, victim.email, victim.password).status_code == 200


def test_a_success_never_renews_the_back_off(proxied_backend: tuple[str, str]) -> None:
    proxy_url, _ = proxied_backend
    users = [_new_user(proxy_url, VICTIM) for _ in range(3)]
    with client_from("127.0.0.4", proxy_url) as http:
        failures = 0
        while failures < 55:  # the attack: 55 wrong passwords from one address
            reply = _login(http, f"guess-{failures}@example.com", "wrong")
            if reply.status_code == 401:
                failures += 1
            else:
                assert reply.status_code == 429, reply.text
                time.sleep(reply.json()["details"]["retry_after_seconds"])
        refused = _login(http, users[0].email, users[0].password)
        assert refused.status_code == 429
        wait = refused.json()["details"]["retry_after_seconds"]
        assert refused.headers["Retry-After"] == str(wait)
        time.sleep(wait)  # as long as the server says
        # The wait is over: every right password gets in, one after another, none re-arms it.
        assert [_login(http, u.email, u.password).status_code for u in users] == [200] * 3


def test_a_browser_that_logged_in_before_keeps_working_during_an_attack_on_its_address(
    proxied_backend: tuple[str, str],
) -> None:
    proxy_url, _ = proxied_backend
    owner = _new_user(proxy_url, VICTIM)
    with client_from("127.0.0.5", proxy_url) as browser, client_from("127.0.0.5", proxy_url) as bot:
        assert _login(browser, owner.email, owner.password).status_code == 200
        assert "taskgate_device" in browser.cookies
        for n in range(60):  # the same address, from a client without the cookie
            _login(bot, f"guess-{n}@example.com", "wrong")
        with client_from("127.0.0.8", proxy_url) as elsewhere:
            for _ in range(5):  # and the owner's account itself, from elsewhere
                assert _login(elsewhere, owner.email, "wrong").status_code == 401
            assert _login(elsewhere, owner.email, owner.password).status_code == 429
        assert _login(bot, owner.email, owner.password).status_code == 429
        assert _login(browser, owner.email, owner.password).status_code == 200


def test_sign_ups_are_limited_per_address(proxied_backend: tuple[str, str]) -> None:
    proxy_url, _ = proxied_backend
    with client_from("127.0.0.6", proxy_url) as http:
        replies = [
            http.post(
                SIGN_UP,
                json={"email": f"flood-{uuid.uuid4().hex}@example.com", "password": "p" * 12},
                headers={"X-Forwarded-For": f"203.0.113.{n}"},
            )
            for n in range(30)
        ]
    statuses = [r.status_code for r in replies]
    assert statuses.count(201) == 5 and statuses.count(429) == 25, statuses
    refused = replies[-1].json()
    assert refused["error_code"] == "rate_limited"
    assert refused["details"]["retry_after_seconds"] >= 1
    # Another address still signs up.
    _new_user(proxy_url, "127.0.0.7")


async def _sign_ups_done_when_login_returns(backend_url: str, agent: Agent, flood: int) -> int:
    done = 0
    async with httpx.AsyncClient(base_url=backend_url, timeout=120) as http:

        async def one_sign_up() -> None:
            nonlocal done
            email = f"flood-{uuid.uuid4().hex}@example.com"
            reply = await http.post(SIGN_UP, json={"email": email, "password": "p" * 12})
            assert reply.status_code == 201, reply.text
            done += 1

        sign_ups = [asyncio.create_task(one_sign_up()) for _ in range(flood)]
        await asyncio.sleep(0.5)  # all of them queued for argon2 first
        form = {"username": agent.email, "password": agent.password}
        login = await http.post(LOGIN, data=form)
        assert login.status_code == 200, login.text
        at_login = done
        await asyncio.gather(*sign_ups)
        return at_login


def test_a_sign_up_flood_does_not_starve_logins_of_argon2(settings: Settings) -> None:
    env = {"DATABASE_URL": settings.database_url, "SIGNUP_ADDRESS_PER_HOUR": "0"}
    flood = 40
    with running_backend(env) as backend_url:
        agent = sign_up(backend_url)
        at_login = asyncio.run(_sign_ups_done_when_login_returns(backend_url, agent, flood))
    print(f"SIGNUP_FLOOD: {at_login} of {flood} sign-ups hashed before the login returned")
    # Sign-ups hold one of the two slots; the login takes the other at once.
    assert at_login < flood // 2, at_login


def _oauth_page(http: httpx.Client, client_id: str) -> httpx.Response:
    """The OAuth login page of a fresh authorization request, as a browser reaches it."""
    _, challenge = pkce_pair()
    params = authorize_params(client_id, REDIRECT_URI, challenge, None, uuid.uuid4().hex[:8])
    start = http.get(OAUTH_AUTHORIZE_PATH, params=params)
    assert start.status_code == 302, start.text
    # The page's URL is the backend's public one; here the proxy is that address.
    login = urlsplit(start.headers["Location"])
    page = http.get(f"{login.path}?{login.query}")
    assert page.status_code == 200, page.text
    return page


def test_the_oauth_login_page_under_an_address_attack_locks_out_that_address_only(
    proxied_backend: tuple[str, str],
) -> None:
    proxy_url, _ = proxied_backend
    owner = _new_user(proxy_url, "127.0.0.11")  # sign-ups are limited per address
    with (
        client_from("127.0.0.9", proxy_url) as browser,
        client_from("127.0.0.9", proxy_url) as attacker,
    ):
        registered = browser.post(
            OAUTH_REGISTER_PATH,
            json={"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"},
        )
        assert registered.status_code == 201, registered.text
        client_id = registered.json()["client_id"]
        # A browser that signed in on the page before the attack, from the address attacked.
        signed_in = submit_login(
            browser, _oauth_page(browser, client_id), owner.email, owner.password
        )
        assert signed_in.status_code == 302, signed_in.text
        statuses = [
            submit_login(
                attacker, _oauth_page(attacker, client_id), f"guess-{n}@example.com", "wrong"
            ).status_code
            for n in range(60)
        ]
        assert statuses[:50] == [401] * 50 and 429 in statuses[50:], statuses
        # The right password from the attacked address, without the device cookie: still 429,
        # the page says when to retry.
        refused = submit_login(
            attacker, _oauth_page(attacker, client_id), owner.email, owner.password
        )
        assert refused.status_code == 429, refused.text
        assert int(refused.headers["Retry-After"]) >= 1
        assert "retry after" in refused.text
        # The browser that signed in before, with its device cookie, still gets in.
        again = submit_login(browser, _oauth_page(browser, client_id), owner.email, owner.password)
        assert again.status_code == 302, again.text
    # Another address signs in on the page at once.
    with client_from("127.0.0.10", proxy_url) as elsewhere:
        page = _oauth_page(elsewhere, client_id)
        assert submit_login(elsewhere, page, owner.email, owner.password).status_code == 302
