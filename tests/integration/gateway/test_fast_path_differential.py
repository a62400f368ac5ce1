"""The fast path answers exactly as the MCP SDK does: one corpus of requests, valid and not, sent
to two gateways over one backend and replica, with the fast path on and off, gets equal replies.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import jwt
import pytest

from shared.settings import Settings
from shared.tokens import ALGORITHM, issue_token
from taskgate.pgpair import PgPair
from tests.support.agents import Agent, sign_up
from tests.support.config import TEST_MCP_URL
from tests.support.fast_path import (
    ACCEPT,
    HANDSHAKE,
    META,
    MODERN,
    NO_LIMIT,
    Case,
    Corpus,
    answered,
    comparable,
    metric,
    scrape,
)
from tests.support.processes import running_gateway
from tests.support.raw_http import RawReply, send_bytes, send_raw
from tests.support.readmodel import insert_tasks, wait_replayed
from tests.support.redis import RedisServer


def build_corpus(agent: Agent, cursor: str, task_id: int, settings: Settings) -> Corpus:
    c = Corpus(agent.token)
    valid: list[tuple[str, str, Any]] = [
        ("first page", "list_tasks", {}),
        ("small page", "list_tasks", {"limit": 2}),
        ("pending", "list_tasks", {"status": "pending"}),
        ("completed, biggest page", "list_tasks", {"status": "completed", "limit": 200}),
        ("second page", "list_tasks", {"limit": 2, "cursor": cursor}),
        ("null cursor", "list_tasks", {"cursor": None}),
        ("no arguments", "get_user_stats", None),
        ("stats", "get_user_stats", {}),
        ("own task", "get_task", {"task_id": task_id}),
    ]
    for version in (None, *HANDSHAKE, MODERN):
        for label, tool, arguments in valid:
            c.call(f"{label} at {version}", tool, arguments, version=version, fast=True)
    # A task that is not the caller's: a miss (its cached {} is no hit), whose not_found the
    # fast path answers through the tool, as the SDK path does.
    c.call("get_task not_found", "get_task", {"task_id": 999_999_999}, fast=True)
    plain_ids: list[Any] = ["abc", 'ünï-✓ "quoted" \\ \u0007', 0, -5, 2**62, ""]
    for rid in plain_ids:
        c.call(f"id {rid!r}", "list_tasks", {"limit": 2}, rid=rid, fast=True)
        c.call(
            f"id {rid!r}, handshake", "list_tasks", {"limit": 2}, version=None, rid=rid, fast=True
        )
    odd_ids: list[Any] = [None, 1.5, True, 2**70, "x" * 500, [1], {"a": 1}]
    for rid in odd_ids:
        c.call(f"odd id {rid!r}", "list_tasks", {}, rid=rid)
        c.call(f"odd id {rid!r}, handshake", "list_tasks", {}, version=None, rid=rid)

    for version in (None, MODERN):
        for label, arguments in [
            ("limit as text", {"limit": "10"}),
            ("limit true", {"limit": True}),
            ("limit float", {"limit": 10.0}),
            ("limit 0", {"limit": 0}),
            ("limit 201", {"limit": 201}),
            ("status x", {"status": "x"}),
            ("extra argument", {"foo": 1}),
            ("empty cursor", {"cursor": ""}),
            ("bad cursor", {"cursor": "garbage"}),
            ("cursor null text", {"cursor": "null"}),
            ("cursor of another status", {"status": "pending", "cursor": cursor}),
            ("arguments list", [1]),
        ]:
            c.call(f"{label} at {version}", "list_tasks", arguments, version=version)
        c.call(
            f"task_id as text at {version}", "get_task", {"task_id": str(task_id)}, version=version
        )
        c.call(f"task_id 0 at {version}", "get_task", {"task_id": 0}, version=version)
        c.call(f"unknown tool at {version}", "no_such_tool", {}, version=version)
        c.call(f"stats with an argument at {version}", "get_user_stats", {"x": 1}, version=version)

    expired = issue_token(settings, agent.id, -60, audience=TEST_MCP_URL)
    for version in (None, MODERN):
        base = c.headers(version, "list_tasks")
        without_auth = [h for h in base if h[0] != "Authorization"]
        for label, auth in [
            ("no token", None),
            ("bad token", "Bearer not-a-token"),
            ("expired token", f"Bearer {expired}"),
            ("backend audience", f"Bearer {agent.backend_token}"),
            ("basic scheme", f"Basic {agent.token}"),
        ]:
            headers = without_auth + ([("Authorization", auth)] if auth else [])
            c.call(f"{label} at {version}", "list_tasks", {}, version=version, headers=headers)
        for label, token in crafted_tokens(settings, agent.id).items():
            headers = [*without_auth, ("Authorization", f"Bearer {token}")]
            c.call(
                f"{label} at {version}",
                "list_tasks",
                {},
                version=version,
                headers=headers,
                fast=None,
            )
        c.call(
            f"lower-case bearer at {version}",
            "list_tasks",
            {},
            version=version,
            headers=[*without_auth, ("Authorization", f"bearer {agent.token}")],
            fast=True,
        )
        c.call(f"wrong host at {version}", "list_tasks", {}, version=version, host="evil.example")
        c.call(f"no port host at {version}", "list_tasks", {}, version=version, host="127.0.0.1")
        for origin, fast in [("http://evil.example", False), ("http://localhost:1234", True)]:
            headers = [*base, ("Origin", origin)]
            c.call(
                f"origin {origin} at {version}",
                "list_tasks",
                {},
                version=version,
                headers=headers,
                fast=fast,
            )
        without = [h for h in base if h[0] not in ("Accept", "Content-Type")]
        for accept, fast in [
            (None, False),
            ("text/event-stream", False),
            ("*/*", True),
            ("application/*", True),
            ("application/json", True),
            ("application/json;q=0.9", True),
            ("text/html", False),
        ]:
            headers = [*without, ("Content-Type", "application/json")]
            headers += [("Accept", accept)] if accept else []
            c.call(
                f"accept {accept} at {version}",
                "list_tasks",
                {},
                version=version,
                headers=headers,
                fast=fast,
            )
        for content_type, fast in [
            (None, False),
            ("text/plain", False),
            ("application/json; charset=utf-8", True),
            ("Application/JSON", False),
            ("application/jsonx", False),
        ]:
            headers = [*without, ("Accept", ACCEPT)]
            headers += [("Content-Type", content_type)] if content_type else []
            # Application/JSON passes the 2026 entry's check, not the handshake transport's.
            served = fast or (
                content_type in ("Application/JSON", "application/jsonx") and version == MODERN
            )
            c.call(
                f"content-type {content_type} at {version}",
                "list_tasks",
                {},
                version=version,
                headers=headers,
                fast=served,
            )
        c.call(
            f"request id at {version}",
            "list_tasks",
            {},
            version=version,
            headers=[*base, ("X-Request-ID", "differential-1")],
            fast=True,
        )
        # A GET that accepts event streams opens the SDK's standalone stream: JSON alone here.
        json_only = [(k, "application/json" if k == "Accept" else v) for k, v in base]
        for method in ("GET", "DELETE", "PUT"):
            c.cases.append(Case(f"{method} at {version}", b"", json_only, method=method))
        c.cases.append(Case(f"trailing slash at {version}", c.cases[0].body, base, path="/mcp/"))
        c.cases.append(Case(f"malformed JSON at {version}", b'{"jsonrpc":', base))
        c.cases.append(Case(f"empty body at {version}", b"", base))
        c.cases.append(Case(f"not an object at {version}", b"[]", base))
        batch = json.dumps([json.loads(c.cases[0].body)] * 2).encode()
        c.cases.append(Case(f"batch at {version}", batch, base))
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        c.cases.append(Case(f"notification at {version}", json.dumps(note).encode(), base))
        big = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "list_tasks", "arguments": {}, "pad": "x" * 70_000},
        }
        c.cases.append(Case(f"oversized body at {version}", json.dumps(big).encode(), base))
        for label, message in [
            (
                "wrong jsonrpc",
                {
                    "jsonrpc": "1.0",
                    "id": 1,
                    "method": "tools/call",
                    "params": {"name": "list_tasks"},
                },
            ),
            (
                "extra member",
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "tools/call",
                    "params": {"name": "list_tasks"},
                    "x": 1,
                },
            ),
            ("no params", {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}),
            ("params list", {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": [1]}),
            ("name missing", {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {}}),
            (
                "name a number",
                {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": 5}},
            ),
            ("tools/list", {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}),
        ]:
            sent = message.get("params")
            if version == MODERN and isinstance(sent, dict):
                message["params"] = {**sent, "_meta": META}
            c.cases.append(Case(f"{label} at {version}", json.dumps(message).encode(), base))

    # Protocol headers: both eras' ways to get them wrong.
    c.call("unsupported version", "list_tasks", {}, version="1999-01-01")
    c.call(
        "handshake body at 2026",
        "list_tasks",
        {},
        version=None,
        headers=c.headers(MODERN, "list_tasks"),
    )
    c.call(
        "envelope at a handshake version",
        "list_tasks",
        {},
        version=MODERN,
        headers=c.headers("2025-06-18"),
    )
    c.call(
        "duplicated version header",
        "list_tasks",
        {},
        headers=[*c.headers(MODERN, "list_tasks"), ("MCP-Protocol-Version", MODERN)],
    )
    legacy_named = [
        *c.headers("2025-06-18"),
        ("Mcp-Method", "tools/call"),
        ("Mcp-Name", "list_tasks"),
    ]
    c.call(
        "handshake with Mcp-Method and Mcp-Name",
        "list_tasks",
        {},
        version="2025-06-18",
        headers=legacy_named,
        fast=True,
    )
    mismatched = [*c.headers("2025-06-18"), ("Mcp-Method", "tools/list"), ("Mcp-Name", "get_task")]
    c.call(
        "handshake with mismatched names",
        "list_tasks",
        {},
        version="2025-06-18",
        headers=mismatched,
        fast=True,
    )
    modern_base = [h for h in c.headers(MODERN) if h[0] != "Mcp-Method"]
    for label, extra, fast in [
        ("no Mcp-Method", [], False),
        ("no Mcp-Name", [("Mcp-Method", "tools/call")], False),
        ("mismatched Mcp-Name", [("Mcp-Method", "tools/call"), ("Mcp-Name", "get_task")], False),
        (
            "mismatched Mcp-Method",
            [("Mcp-Method", "tools/list"), ("Mcp-Name", "list_tasks")],
            False,
        ),
        ("padded names", [("Mcp-Method", "  tools/call "), ("Mcp-Name", "\tlist_tasks  ")], True),
        (
            "base64 name",
            [("Mcp-Method", "tools/call"), ("Mcp-Name", "=?base64?bGlzdF90YXNrcw==?=")],
            True,
        ),
        (
            "duplicated Mcp-Name",
            [("Mcp-Method", "tools/call"), ("Mcp-Name", "list_tasks"), ("Mcp-Name", "list_tasks")],
            False,
        ),
        (
            "Mcp-Param header",
            [("Mcp-Method", "tools/call"), ("Mcp-Name", "list_tasks"), ("Mcp-Param-Limit", "2")],
            False,
        ),
    ]:
        c.call(label, "list_tasks", {"limit": 2}, headers=[*modern_base, *extra], fast=fast)
    for label, meta in [
        ("no _meta", None),
        ("_meta without capabilities", {k: v for k, v in META.items() if "Capabilities" not in k}),
        (
            "_meta at another version",
            {**META, "io.modelcontextprotocol/protocolVersion": "2025-06-18"},
        ),
        ("capabilities not an object", {**META, "io.modelcontextprotocol/clientCapabilities": "x"}),
        ("client info not an object", {**META, "io.modelcontextprotocol/clientInfo": 5}),
        ("progress token", {**META, "progressToken": "p1"}),
        ("log level", {**META, "io.modelcontextprotocol/logLevel": "debug"}),
    ]:
        params: dict[str, Any] = {"name": "list_tasks", "arguments": {}}
        if meta is not None:
            params["_meta"] = meta
        message = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params}
        headers = c.headers(MODERN, "list_tasks")
        c.cases.append(Case(label, json.dumps(message).encode(), headers, fast=None))
    legacy_meta = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": "list_tasks", "arguments": {}, "_meta": {"progressToken": 1}},
    }
    c.cases.append(
        Case("_meta at a handshake version", json.dumps(legacy_meta).encode(), c.headers(None))
    )
    add_hostile_cases(c, agent, settings)
    return c


def crafted_tokens(settings: Settings, user_id: int) -> dict[str, str]:
    """Tokens signed with the gateway's secret whose claims a careless check would misread."""
    now = int(time.time())
    base = {
        "sub": str(user_id),
        "iat": now,
        "exp": now + 600,
        "iss": settings.jwt_issuer,
        "aud": TEST_MCP_URL,
    }
    variants: dict[str, dict[str, Any]] = {
        "OAuth-issued shape (client_id, scope)": {"client_id": "c1", "scope": "tasks:read"},
        "audience with a trailing slash": {"aud": TEST_MCP_URL + "/"},
        "another gateway's audience": {"aud": "http://other-gateway.example/mcp"},
        "audience list with ours": {"aud": ["http://other.example/mcp", TEST_MCP_URL]},
        "not valid before later": {"nbf": now + 600},
        "subject with zeros": {"sub": f"00{user_id}"},
        "subject with a plus": {"sub": f"+{user_id}"},
        "subject in Arabic-Indic digits": {
            "sub": "".join(chr(0x660 + int(d)) for d in str(user_id))
        },
        "subject over bigint": {"sub": "9" * 19},
        "subject a number": {"sub": user_id},
        "expired a second ago": {"exp": now - 1},
        "another issuer": {"iss": "http://evil.example"},
    }
    secret = settings.jwt_secret.get_secret_value()
    return {
        label: jwt.encode({**base, **changes}, secret, algorithm=ALGORITHM)
        for label, changes in variants.items()
    }


def add_hostile_cases(c: Corpus, agent: Agent, settings: Settings) -> None:
    """What a hostile client sends: bodies and headers each parser or check might read
    differently from the SDK's. Either path may answer; the replies must be equal."""
    for version in (None, MODERN):
        base = c.headers(version, "list_tasks")
        meta = f',"_meta":{json.dumps(META)}' if version == MODERN else ""

        def raw(label: str, text: str, at: str | None = version) -> None:
            c.cases.append(
                Case(f"{label} at {at}", text.encode(), c.headers(at, "list_tasks"), fast=None)
            )

        call = '{"jsonrpc":"2.0","id":%s,"method":%s,"params":{"name":"list_tasks",%s%s}}'
        raw("duplicate ids", call % ('1,"id":2', '"tools/call"', '"arguments":{}', meta))
        raw("duplicate methods", call % ("1", '"tools/list","method":"tools/call"', "", meta))
        raw(
            "duplicate names",
            call % ("1", '"tools/call"', '"name":"get_user_stats","arguments":{}', meta),
        )
        raw(
            "duplicate arguments",
            call % ("1", '"tools/call"', '"arguments":{"limit":2},"arguments":{}', meta),
        )
        raw(
            "duplicate limit",
            call % ("1", '"tools/call"', '"arguments":{"limit":2,"limit":3}', meta),
        )
        for rid in ("1.0", "-0", "1e2", "123456789012345678901234567890", '"\\ud800"', '"\\u0000"'):
            raw(f"id {rid}", call % (rid, '"tools/call"', '"arguments":{}', meta))
        raw("escaped method", call % ("1", '"tools\\u002fcall"', '"arguments":{}', meta))
        raw("arguments null", call % ("1", '"tools/call"', '"arguments":null', meta))
        raw("limit -0", call % ("1", '"tools/call"', '"arguments":{"limit":-0}', meta))
        raw("limit 2.0", call % ("1", '"tools/call"', '"arguments":{"limit":2.0}', meta))
        raw("limit 1e1", call % ("1", '"tools/call"', '"arguments":{"limit":1e1}', meta))
        raw(
            "surrogate cursor",
            call % ("1", '"tools/call"', '"arguments":{"cursor":"\\udc00"}', meta),
        )
        raw("nul status", call % ("1", '"tools/call"', '"arguments":{"status":"all\\u0000"}', meta))
        valid = call % ("1", '"tools/call"', '"arguments":{"limit":2}', meta)
        raw("BOM", "\ufeff" + valid)
        raw("leading whitespace", " \r\n\t" + valid + "\n")
        c.cases.append(Case(f"UTF-16 body at {version}", valid.encode("utf-16"), base, fast=None))
        latin = valid.replace('"limit":2', '"cursor":"\xff"').encode("latin-1")
        c.cases.append(Case(f"non-UTF-8 bytes at {version}", latin, base, fast=None))
        # MAX_BODY_BYTES exactly (the SDK allows it) and one byte more (the SDK's 413).
        for extra, label in [(0, "at"), (1, "over")]:
            padded = valid + " " * (settings.max_body_bytes - len(valid) + extra)
            c.cases.append(
                Case(
                    f"body just {label} the limit at {version}",
                    padded.encode(),
                    base,
                    fast=not extra,
                )
            )
        without_auth = [h for h in base if h[0] != "Authorization"]
        good, bad = f"Bearer {agent.token}", "Bearer not-a-token"
        for label, values in [
            ("two tokens, good first", [good, bad]),
            ("two tokens, bad first", [bad, good]),
            ("bearer with two spaces", [f"Bearer  {agent.token}"]),
            ("BEARER", [f"BEARER {agent.token}"]),
            ("bearer with a tab", [f"Bearer\t{agent.token}"]),
        ]:
            headers = without_auth + [("Authorization", v) for v in values]
            c.cases.append(Case(f"{label} at {version}", valid.encode(), headers, fast=None))
        c.cases.append(
            Case(
                f"second Host evil at {version}",
                valid.encode(),
                [*base, ("Host", "evil.example")],
                fast=None,
            )
        )
        c.cases.append(
            Case(
                f"first Host evil at {version}",
                valid.encode(),
                [*base, ("Host", "127.0.0.1:1")],
                host="evil.example",
                fast=None,
            )
        )
        for label, added in [
            ("two content types", [("Content-Type", "text/plain")]),
            ("two accepts", [("Accept", "text/html")]),
            ("two origins", [("Origin", "http://localhost:1"), ("Origin", "http://evil.example")]),
            ("origin null", [("Origin", "null")]),
            ("origin empty", [("Origin", "")]),
            ("origin evil, padded", [("Origin", " http://evil.example ")]),
            ("origin with a path", [("Origin", "http://localhost:1/x")]),
            ("a session id", [("Mcp-Session-Id", "not-a-session")]),
            ("Last-Event-ID", [("Last-Event-ID", "1")]),
            ("gzip declared", [("Content-Encoding", "gzip")]),
            ("long request id", [("X-Request-ID", "r" * 5000)]),
            ("request id with controls", [("X-Request-ID", "a\x01b\x7f")]),
            ("two request ids", [("X-Request-ID", "one"), ("X-Request-ID", "two")]),
        ]:
            c.cases.append(
                Case(f"{label} at {version}", valid.encode(), [*base, *added], fast=None)
            )
        c.cases.append(Case(f"HEAD at {version}", b"", base, method="HEAD"))
        for host in ("", " ", "127.0.0.1:1 ", "LOCALHOST:1", "127.0.0.1:1@evil.example"):
            c.cases.append(
                Case(f"host {host!r} at {version}", valid.encode(), base, host=host, fast=None)
            )
        c.cases.append(
            Case(f"query string at {version}", valid.encode(), base, path="/mcp?x=1", fast=None)
        )
        c.cases.append(Case(f"double slash at {version}", valid.encode(), base, path="//mcp"))
        c.cases.append(
            Case(f"escaped path at {version}", valid.encode(), base, path="/m%63p", fast=None)
        )
    modern = [h for h in c.headers(MODERN) if h[0] != "Mcp-Method"]
    for label, method, name in [
        ("Mcp-Name upper case", "tools/call", "LIST_TASKS"),
        ("Mcp-Name with nbsp", "tools/call", "\xa0list_tasks"),
        ("Mcp-Name with vertical tab", "tools/call", "list_tasks\x0b"),
        ("Mcp-Method upper case", "TOOLS/CALL", "list_tasks"),
        ("Mcp-Name empty", "tools/call", ""),
        ("Mcp-Name base64 of another", "tools/call", "=?base64?Z2V0X3Rhc2s=?="),
    ]:
        c.call(
            label,
            "list_tasks",
            {"limit": 2},
            headers=[*modern, ("Mcp-Method", method), ("Mcp-Name", name)],
            fast=None,
        )


@pytest.fixture(scope="module")
def gateways(settings: Settings, backend_url: str) -> Iterator[tuple[str, str]]:
    # Idle connections close after 1 s: a raw exchange reads until the server closes.
    env = {"CACHE_TTL": "600", "KEEP_ALIVE_TIMEOUT_SECONDS": "1", **NO_LIMIT}
    with (
        running_gateway(settings, backend_url, {**env, "MCP_FAST_PATH": "true"}) as fast,
        running_gateway(settings, backend_url, {**env, "MCP_FAST_PATH": "false"}) as sdk,
    ):
        yield fast, sdk


async def test_the_fast_path_answers_every_request_as_the_sdk_does(
    gateways: tuple[str, str], pg_pair: PgPair, backend_url: str, settings: Settings
) -> None:
    fast, sdk = gateways
    agent = sign_up(backend_url)
    wait_replayed(pg_pair, insert_tasks(pg_pair, agent.id, 7, spacing=1))
    task_id = int(pg_pair.psql(f"SELECT min(id) FROM tasks WHERE user_id = {agent.id}"))
    probe = Corpus(agent.token)
    probe.call("page", "list_tasks", {"limit": 2})
    page = await send_raw(sdk, "POST", probe.cases[0].headers, probe.cases[0].body)
    cursor = page.json()["result"]["structuredContent"]["next_cursor"]
    corpus = build_corpus(agent, cursor, task_id, settings)

    async def send(url: str, case: Case) -> RawReply:
        return await send_raw(url, case.method, case.headers, case.body, case.path, case.host)

    for case in corpus.cases:  # warm both caches with every valid read
        if case.fast:
            await send(fast, case)
            await send(sdk, case)
    before = {url: await scrape(url) for url in (fast, sdk)}
    mismatches, misrouted = [], []
    for case in corpus.cases:
        answers = answered(await scrape(fast))
        one, two = await send(fast, case), await send(sdk, case)
        if comparable(one, fast) != comparable(two, sdk):
            mismatches.append((case.name, comparable(one, fast), comparable(two, sdk)))
        if case.fast is not None and (answered(await scrape(fast)) > answers) != case.fast:
            misrouted.append(case.name)
    assert not mismatches, json.dumps(mismatches, indent=1, default=str)[:8000]
    assert not misrouted, misrouted

    after = {url: await scrape(url) for url in (fast, sdk)}
    assert not metric(after[sdk], "taskgate_fast_path_answers_total")
    # Observed alike: the same calls counted by tool and outcome, the same cache hits.
    for name in ("taskgate_tool_calls_total", "taskgate_cache_hits_total"):
        counted = [
            {
                k: v - metric(before[url], name).get(k, 0)
                for k, v in metric(after[url], name).items()
            }
            for url in (fast, sdk)
        ]
        assert counted[0] == counted[1], name


async def test_an_agent_sees_its_own_write_through_the_fast_path(
    gateways: tuple[str, str], backend_url: str
) -> None:
    fast, _ = gateways
    agent = sign_up(backend_url)
    c = Corpus(agent.token)
    c.call("page", "list_tasks", {})
    c.call("create", "create_task", {"title": "written just now"})
    page, create = c.cases
    titles = []
    for case in (page, page, create, page):  # fill the cache, hit it, write, read again
        reply = await send_raw(fast, "POST", case.headers, case.body)
        result = reply.json()["result"]
        assert not result.get("isError"), result
        if case is page:
            titles.append([t["title"] for t in result["structuredContent"]["tasks"]])
    assert titles == [[], [], ["written just now"]]


async def test_trusted_mode_answers_as_the_sdk_does(
    settings: Settings, backend_url: str, pg_pair: PgPair
) -> None:
    agent = sign_up(backend_url)
    wait_replayed(pg_pair, insert_tasks(pg_pair, agent.id, 3, spacing=1))
    c = Corpus("unused")
    for version in (None, "2025-06-18", MODERN):
        headers = [h for h in c.headers(version, "list_tasks") if h[0] != "Authorization"]
        for label, arguments, served in [
            ("page", {"user_id": agent.id, "limit": 2}, True),
            ("stats", {"user_id": agent.id}, True),
            ("user_id as text", {"user_id": str(agent.id)}, False),
            ("no user_id", {}, False),
            ("user_id 0", {"user_id": 0}, False),
            ("user_id true", {"user_id": True}, False),
            ("user_id 1.0 style", {"user_id": float(agent.id)}, False),
            ("user_id over bigint", {"user_id": 2**63}, False),
            ("user_id negative", {"user_id": -agent.id}, False),
            ("another user's id", {"user_id": agent.id + 1, "limit": 2}, None),
        ]:
            tool = "get_user_stats" if label == "stats" else "list_tasks"
            named = [(k, tool if k == "Mcp-Name" else v) for k, v in headers]
            c.call(
                f"{label} at {version}",
                tool,
                arguments,
                version=version,
                headers=named,
                fast=served,
            )
    env = {"AUTH_MODE": "user_param", "CACHE_TTL": "600", **NO_LIMIT}
    with (
        running_gateway(settings, backend_url, {**env, "MCP_FAST_PATH": "true"}) as fast,
        running_gateway(settings, backend_url, {**env, "MCP_FAST_PATH": "false"}) as sdk,
    ):
        for case in c.cases:
            if case.fast:
                await send_raw(fast, "POST", case.headers, case.body)
                await send_raw(sdk, "POST", case.headers, case.body)
        for case in c.cases:
            answers = answered(await scrape(fast))
            one = await send_raw(fast, "POST", case.headers, case.body)
            two = await send_raw(sdk, "POST", case.headers, case.body)
            assert comparable(one, fast) == comparable(two, sdk), case.name
            if case.fast is not None:  # trusted mode: another id is a hit once that one is cached
                assert (answered(await scrape(fast)) > answers) == case.fast, case.name


async def test_replies_from_a_shared_redis_cache_are_the_sdks(
    settings: Settings, backend_url: str, pg_pair: PgPair, redis_server: RedisServer
) -> None:
    agent = sign_up(backend_url)
    wait_replayed(pg_pair, insert_tasks(pg_pair, agent.id, 3, spacing=1))
    c = Corpus(agent.token)
    for version in (None, MODERN):
        c.call(f"page at {version}", "list_tasks", {"limit": 2}, version=version, fast=True)
        c.call(f"stats at {version}", "get_user_stats", {}, version=version, fast=True)
    env = {"CACHE_URL": redis_server.url, "CACHE_TTL": "600", **NO_LIMIT}
    with (
        running_gateway(settings, backend_url, {**env, "MCP_FAST_PATH": "true"}) as fast,
        running_gateway(settings, backend_url, {**env, "MCP_FAST_PATH": "false"}) as sdk,
    ):
        for case in c.cases:  # the SDK's gateway fills the shared cache, the other reads it
            first = await send_raw(sdk, "POST", case.headers, case.body)
            answers = answered(await scrape(fast))
            again = await send_raw(fast, "POST", case.headers, case.body)
            assert comparable(again, fast) == comparable(first, sdk), case.name
            assert answered(await scrape(fast)) == answers + 1, case.name


def wire_request(corpus: Corpus, url: str, body: bytes, framing: str) -> bytes:
    """One POST to `url`'s MCP path as bytes, framed by Content-Length or chunks."""
    parts = urlsplit(url)
    head = [f"POST {parts.path} HTTP/1.1", f"Host: {parts.netloc}"]
    head += [f"{k}: {v}" for k, v in corpus.headers(None, "list_tasks")]
    if framing == "chunked":
        head.append("Transfer-Encoding: chunked")
        chunks = [body[i : i + 7] for i in range(0, len(body), 7)]
        data = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n\r\n"
    else:
        head.append(f"Content-Length: {framing}")
        data = body
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data


async def test_framing_and_pipelining_are_answered_as_the_sdk_does(
    gateways: tuple[str, str], backend_url: str
) -> None:
    """Chunked bodies, pipelined requests and a Content-Length shorter than the body: the fast
    path reads the body uvicorn framed, as the SDK does, and answers each request in turn."""
    fast, sdk = gateways
    agent = sign_up(backend_url)
    c = Corpus(agent.token)
    c.call("page", "list_tasks", {"limit": 2}, version=None)
    c.call("stats", "get_user_stats", {}, version=None, rid=2)
    page, stats = (case.body for case in c.cases)
    for url in (fast, sdk):  # warm both caches
        for body in (page, stats):
            await send_raw(url, "POST", c.headers(None), body)
    exchanges: dict[str, Callable[[str], bytes]] = {
        "chunked": lambda url: wire_request(c, url, page, "chunked"),
        "pipelined": lambda url: (
            wire_request(c, url, page, str(len(page)))
            + wire_request(c, url, stats, "chunked")
            + wire_request(c, url, page, str(len(page)))
        ),
        "length shorter than the body": lambda url: wire_request(
            c, url, page + page, str(len(page))
        ),
        "length zero": lambda url: wire_request(c, url, page, "0"),
        "length with a plus": lambda url: wire_request(c, url, page, f"+{len(page)}"),
        "length not ASCII digits": lambda url: wire_request(c, url, page, "\xb2"),
    }
    for label, build in exchanges.items():
        answers = answered(await scrape(fast))
        one = await send_bytes(fast, build(fast), replies=3)
        two = await send_bytes(sdk, build(sdk), replies=3)
        assert [comparable(r, fast) for r in one] == [comparable(r, sdk) for r in two], label
        assert one, label
        if label in ("chunked", "pipelined"):
            assert answered(await scrape(fast)) > answers, label


_MADE_BY_EACH_WRITE = frozenset({"id", "created_at", "updated_at", "completed_at"})


def _unmade(value: Any) -> Any:
    """A write's answer without what each write makes anew (ids, times); JSON in a text block
    is opened, so the text the agent reads is compared too."""
    if isinstance(value, dict):
        return {k: "<made>" if k in _MADE_BY_EACH_WRITE else _unmade(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unmade(v) for v in value]
    if isinstance(value, str) and value.startswith("{"):
        try:
            return ("json", _unmade(json.loads(value)))
        except ValueError:
            return value
    return value


async def _assert_writes_answered_alike(fast: str, sdk: str, cases: list[Case]) -> None:
    """Each write sent to both gateways: equal replies but for what each write makes anew, and
    the fast path answering exactly the cases marked `fast`."""
    mismatches, misrouted = [], []
    for case in cases:
        before = answered(await scrape(fast), "write")
        one = await send_raw(fast, case.method, case.headers, case.body)
        two = await send_raw(sdk, case.method, case.headers, case.body)
        mine, theirs = comparable(one, fast), comparable(two, sdk)
        mine["body"], theirs["body"] = _unmade(one.json()), _unmade(two.json())
        if mine != theirs:
            mismatches.append((case.name, mine, theirs))
        if (answered(await scrape(fast), "write") > before) != case.fast:
            misrouted.append(case.name)
    assert not mismatches, json.dumps(mismatches, indent=1, default=str)[:8000]
    assert not misrouted, misrouted


def _write_corpus(agent: Agent, own: int, others: int) -> Corpus:
    """Write calls, valid and not. True: the fast path answers it (the tool runs, whatever it
    then answers); False: the SDK must (arguments the tool's model would not take unchanged)."""
    c = Corpus(agent.token)
    for version in (None, "2025-06-18", MODERN):
        for label, tool, arguments, fast in [
            ("create", "create_task", {"title": "differential"}, True),
            ("create with details", "create_task", {"title": "d", "description": "x" * 300}, True),
            ("create, no title", "create_task", {}, True),
            ("create, empty title", "create_task", {"title": ""}, True),
            ("create, title a number", "create_task", {"title": 5}, True),
            ("create, title too long", "create_task", {"title": "t" * 10_000}, True),
            ("create, unknown argument", "create_task", {"title": "t", "owner": 1}, False),
            ("complete own", "complete_task", {"task_id": own}, True),
            ("complete another user's", "complete_task", {"task_id": others}, True),
            ("complete, id as text", "complete_task", {"task_id": str(own)}, True),
            ("complete, id 0", "complete_task", {"task_id": 0}, True),
            ("update, nothing to change", "update_task", {"task_id": own}, True),
            ("update another user's", "update_task", {"task_id": others, "title": "x"}, True),
            ("delete another user's", "delete_task", {"task_id": others}, True),
            ("delete none", "delete_task", {"task_id": 2**62}, True),
        ]:
            c.call(f"{label} at {version}", tool, arguments, version=version, fast=fast)
    return c


async def test_write_calls_are_answered_as_the_sdk_does(
    gateways: tuple[str, str], backend_url: str, pg_pair: PgPair
) -> None:
    """Each write is sent to both gateways; their answers are equal but for what each write
    makes anew. The fast path must answer every call it can and nothing else, and each call is
    applied once by each gateway (never passed on after its tool ran)."""
    fast, sdk = gateways
    agent, other = sign_up(backend_url), sign_up(backend_url)
    wait_replayed(pg_pair, insert_tasks(pg_pair, agent.id, 1, spacing=1))
    wait_replayed(pg_pair, insert_tasks(pg_pair, other.id, 1, spacing=1))
    own = int(pg_pair.psql(f"SELECT min(id) FROM tasks WHERE user_id = {agent.id}"))
    others = int(pg_pair.psql(f"SELECT min(id) FROM tasks WHERE user_id = {other.id}"))
    original = pg_pair.psql(f"SELECT title FROM tasks WHERE id = {others}")
    corpus = _write_corpus(agent, own, others)
    await _assert_writes_answered_alike(fast, sdk, corpus.cases)
    # Every create was applied once per gateway: 3 eras x 2 valid creates, twice, and the seed.
    created = pg_pair.psql(f"SELECT count(*) FROM tasks WHERE user_id = {agent.id}")
    assert int(created) == 1 + 3 * 2 * 2
    untouched = pg_pair.psql(
        f"SELECT count(*), bool_or(completed) FROM tasks WHERE user_id = {other.id}"
    )
    title = pg_pair.psql(f"SELECT title FROM tasks WHERE id = {others}")
    assert (untouched, title) == ("1|f", original)
    assert sum(bool(case.fast) for case in corpus.cases) > 30


async def test_trusted_mode_writes_are_answered_as_the_sdk_does(
    settings: Settings, backend_url: str, pg_pair: PgPair
) -> None:
    """AUTH_MODE=user_param: a write names its user in `user_id`; the fast path answers what
    the SDK would, for that user only, and leaves to the SDK what it would refuse."""
    agent = sign_up(backend_url)
    c = Corpus("unused")
    for version in (None, MODERN):
        headers = [h for h in c.headers(version, "create_task") if h[0] != "Authorization"]
        for label, arguments, served in [
            ("create", {"user_id": agent.id, "title": "trusted"}, True),
            ("create, bad title", {"user_id": agent.id, "title": ""}, True),
            ("create, user_id as text", {"user_id": str(agent.id), "title": "t"}, False),
            ("create, no user_id", {"title": "t"}, False),
        ]:
            c.call(f"{label} at {version}", "create_task", arguments, version, headers=headers)
            c.cases[-1] = dataclasses.replace(c.cases[-1], fast=served)
    env = {"AUTH_MODE": "user_param", "CACHE_TTL": "600", **NO_LIMIT}
    with (
        running_gateway(settings, backend_url, {**env, "MCP_FAST_PATH": "true"}) as fast,
        running_gateway(settings, backend_url, {**env, "MCP_FAST_PATH": "false"}) as sdk,
    ):
        await _assert_writes_answered_alike(fast, sdk, c.cases)
    created = pg_pair.psql(f"SELECT count(*) FROM tasks WHERE user_id = {agent.id}")
    # "trusted" and the id as text (which the SDK takes) at both versions, through both gateways
    assert created == "8"
