#!/usr/bin/env python3
"""Container health check: GET http://127.0.0.1:$ATTUNE_HTTP_PORT<path> (default
/healthz); exit 0 on a 2xx answer, 1 otherwise. Standard library only, no proxy.

    attune-healthcheck            # liveness: /healthz
    attune-healthcheck /readyz    # readiness: dependencies reachable
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main(argv: list[str]) -> int:
    path = argv[1] if len(argv) > 1 else "/healthz"
    port = os.environ.get("ATTUNE_HTTP_PORT", "8000")
    url = f"http://127.0.0.1:{port}{path}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=3.0):
            return 0  # urllib raises HTTPError for any status >= 400
    except urllib.error.HTTPError as error:
        print(f"{url}: HTTP {error.code}", file=sys.stderr)
    except (OSError, ValueError) as error:
        print(f"{url}: {error}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
