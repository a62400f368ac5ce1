"""The gateway on uvicorn's pure-Python stack (asyncio loop, h11 parser), configured like
`taskgate gateway` otherwise: the "before" of the uvloop + httptools change, in the same run.
"""

from __future__ import annotations

import uvicorn

from gateway.server import build_http_app
from shared.logs import configure_logging
from shared.settings import Settings


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    uvicorn.run(
        build_http_app(settings),
        host=settings.mcp_host,
        port=settings.mcp_port,
        log_config=None,
        access_log=False,
        loop="asyncio",
        http="h11",
    )


if __name__ == "__main__":
    main()
