"""python -m ops.console RUN_DIR: the console on OMS_HTTP_HOST:OMS_HTTP_PORT (127.0.0.1:8081; the supervisor
sets the port as for a service), sampling the services whose port files are in RUN_DIR; its audit file is
RUN_DIR/console-audit.jsonl. OMS_CONSOLE_TRACE_URL (e.g. `http://127.0.0.1:16686/trace/{trace_id}`): an order's
trace id links there."""

import asyncio
import os
import sys
from pathlib import Path

import uvicorn

from shared.logging import configure_logging
from shared.settings import CONSOLE_HTTP_PORT, secret, settings

from .app import Console, build_app
from .audit import AuditLog
from .auth import Sessions
from .sampler import Sampler


def main() -> None:
    run_dir = Path(sys.argv[1])
    configure_logging("console", os.environ.get("OMS_LOG_LEVEL", "INFO"))
    config = settings()
    console = Console(config, Sessions(secret("OMS_CONSOLE_PASSWORD"), secret("OMS_CONSOLE_SESSION_SECRET")),
                      Sampler(config, run_dir, float(os.environ.get("OMS_CONSOLE_SAMPLE_SECONDS", 5))),
                      AuditLog(run_dir / "console-audit.jsonl"), os.environ.get("OMS_CONSOLE_TRACE_URL") or None)
    server = uvicorn.Server(uvicorn.Config(build_app(console), host=config.http_host,
                                           port=int(os.environ.get("OMS_HTTP_PORT", CONSOLE_HTTP_PORT)),
                                           log_config=None, access_log=False))
    asyncio.run(server.serve())


if __name__ == "__main__":
    main()
