"""`python -m cli.healthcheck`: the container image's health check, one for every role the image
plays. It asks the readiness endpoint of what the container runs (read from PID 1's command line):
the gateway's /readyz, a worker's /ready/; a one-shot job (`rtm provision`, `rtm migrate`) or any
other command counts as healthy while it runs. Exit 0 healthy, 1 not."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from pathlib import Path


def target(argv: list[str]) -> str | None:
    """The URL to ask for a container whose main process is `argv`, or None (nothing to ask)."""
    from rtm.settings import get_settings

    words = [Path(a).name for a in argv]
    if "rtm" not in words:
        return None
    command = words[words.index("rtm") + 1:words.index("rtm") + 2]
    if command == ["gateway"]:
        from ingest.settings import get_gateway_settings

        port = get_gateway_settings().port
        if "--port" in argv:
            port = int(argv[argv.index("--port") + 1])
        return f"http://127.0.0.1:{port}/readyz"
    if command == ["worker"] and "--supervise" not in argv:
        return f"http://127.0.0.1:{get_settings().worker_web_port}/ready/"
    return None


def main() -> int:
    try:
        argv = [a.decode() for a in Path("/proc/1/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        argv = []
    url = target(argv)
    if url is None:
        return 0
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # loopback only
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"not ready: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
