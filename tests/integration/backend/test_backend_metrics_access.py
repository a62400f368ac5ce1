"""The backend's /metrics on the real process: public by default, behind METRICS_TOKEN when it
is set, or on BACKEND_METRICS_PORT alone, as the gateway's."""

from __future__ import annotations

import httpx

from shared.settings import Settings
from taskgate.pgpair import free_port
from tests.support.processes import running_backend

TOKEN = "Mt7-qZ2vLp9xKw4RbN8cH1dJ5fT3sG6yA0e"


def test_a_metrics_token_guards_the_backends_metrics(settings: Settings) -> None:
    env = {"DATABASE_URL": settings.database_url, "METRICS_TOKEN": TOKEN}
    with running_backend(env) as url, httpx.Client(base_url=url, timeout=30) as http:
        refused = http.get("/metrics")
        assert refused.status_code == 401 and refused.json()["error_code"] == "unauthorized"
        assert http.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        served = http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert served.status_code == 200 and "taskgate_backend" in served.text


def test_a_metrics_port_serves_them_there_only(settings: Settings) -> None:
    metrics_port = free_port()
    env = {"DATABASE_URL": settings.database_url, "BACKEND_METRICS_PORT": str(metrics_port)}
    with running_backend(env) as url, httpx.Client(timeout=30) as http:
        assert http.get(f"{url}/metrics").status_code == 404
        served = http.get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert served.status_code == 200 and "taskgate_backend" in served.text
