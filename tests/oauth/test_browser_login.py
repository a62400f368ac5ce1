"""A person logs in with a real browser: headless Chromium (Debian's package, driven through
chromedriver) fills the login page that /authorize leads to, and the client's loopback redirect
receives the code, which then buys tokens that the gateway serves."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from selenium.webdriver.common.by import By

from tests.support.browser import chromium
from tests.support.oauth import (
    ACCEPT,
    LIST_TOOLS,
    OAuthStack,
    authorize_params,
    discover,
    pkce_pair,
    redeem,
    register,
)
from tests.support.ports import free_port


@contextmanager
def loopback_redirect_receiver() -> Iterator[tuple[str, queue.Queue[dict[str, list[str]]]]]:
    """What a native MCP client runs: a one-path HTTP server on a loopback port."""
    received: queue.Queue[dict[str, list[str]]] = queue.Queue()

    class Callback(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            received.put(parse_qs(urlsplit(self.path).query))
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"You can close this window.")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", free_port()), Callback)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/callback", received
    finally:
        server.shutdown()
        server.server_close()


def test_a_person_logs_in_with_chromium_and_the_client_gets_its_code(
    oauth_stack: OAuthStack,
) -> None:
    agent = oauth_stack.agent()
    with oauth_stack.client() as http, loopback_redirect_receiver() as (redirect_uri, received):
        found = discover(http, oauth_stack.mcp_url)
        client_id = register(http, found, redirect_uri)
        verifier, challenge = pkce_pair()
        params = authorize_params(client_id, redirect_uri, challenge, found.resource, "st8")

        with chromium() as browser:
            browser.get(f"{found.authorize_url}?{urlencode(params)}")
            assert "Log in" in browser.title
            assert "taskgate test client" in browser.page_source
            browser.find_element(By.NAME, "email").send_keys(agent.email)
            browser.find_element(By.NAME, "password").send_keys(agent.password)
            browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
            query = received.get(timeout=60)

        assert query["state"] == ["st8"]
        tokens = redeem(http, found, client_id, query["code"][0], verifier, redirect_uri, None)
        assert tokens.status_code == 200, tokens.text
        headers = {**ACCEPT, "Authorization": f"Bearer {tokens.json()['access_token']}"}
        served = httpx.post(oauth_stack.mcp_url, json=LIST_TOOLS, headers=headers, timeout=30)
        assert served.status_code == 200, served.text
