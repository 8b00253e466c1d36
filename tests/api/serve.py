"""Serve the test agents on a free loopback port: ``python -m tests.api.serve``.

Settings come from ``CULM_*`` environment variables; ``CULM_TEST_APP`` names the agents
(``tests.agents:app`` by default); ``TEST_DISK_SWITCH=1`` adds the routes of
``tests.api.disk``. The socket is bound here, before the
server starts, and its port printed on the first line of stdout, so the parent never races
another process for a port.
"""

from __future__ import annotations

import os
import socket

import culm
from culm.api import create_app
from culm.api.server import Server, server_config


def main() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    agents = culm.load_app(os.environ.get("CULM_TEST_APP", "tests.agents:app"))
    settings = culm.Settings()
    api = create_app(agents, settings)
    if os.environ.get("TEST_DISK_SWITCH"):
        from tests.api.disk import add_disk_switch

        add_disk_switch(api)
    config = server_config(
        api, settings, log_level="warning", access_log=False, timeout_graceful_shutdown=1
    )
    Server(config, api).run(sockets=[sock])


if __name__ == "__main__":
    main()
