"""DNS-rebinding protection is set up for the deployment's own hosts."""

from __future__ import annotations

from gateway.server import transport_security
from shared.settings import Settings


def test_the_public_url_and_loopback_are_allowed_by_default() -> None:
    settings = Settings(
        _env_file=None, mcp_host="0.0.0.0", mcp_public_url="https://tasks.example.com/mcp"
    )
    security = transport_security(settings)
    assert security.enable_dns_rebinding_protection
    assert "tasks.example.com" in security.allowed_hosts
    assert "127.0.0.1:*" in security.allowed_hosts
    assert "https://tasks.example.com" in security.allowed_origins
    assert not any("attacker" in host for host in security.allowed_hosts)


def test_configured_hosts_and_origins_replace_the_defaults() -> None:
    settings = Settings(
        _env_file=None,
        mcp_allowed_hosts=["gw.internal:8001"],
        mcp_allowed_origins=["https://console.example.com"],
    )
    security = transport_security(settings)
    assert security.allowed_hosts == ["gw.internal:8001"]
    assert security.allowed_origins == ["https://console.example.com"]
