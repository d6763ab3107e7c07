"""Asking a running service how it is: its /health/ready report, read by `oms status` and `oms up`."""

import json
import urllib.error
import urllib.request


def readiness(url: str | None) -> tuple[bool, list[str]]:
    """(ready, problems) from the service's own report; a service that does not answer is not ready."""
    if url is None:
        return False, ["no HTTP port recorded"]
    try:
        with urllib.request.urlopen(f"{url}/health/ready", timeout=3) as response:
            report = json.loads(response.read())
    except urllib.error.HTTPError as error:
        report = json.loads(error.read() or b"{}")
    except (OSError, ValueError) as error:
        return False, [f"no answer on {url}: {error}"]
    return bool(report.get("ready")), list(report.get("problems", []))


def describe(url: str | None) -> str:
    ready, problems = readiness(url)
    state = "ready" if ready else "NOT READY (" + "; ".join(problems) + ")"
    return f"{state}  metrics {url}/metrics" if url else state
