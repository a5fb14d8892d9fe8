"""The third-party ads API, served locally over HTTP (spec: shared/specs/ads-api.md §1).

`api_response(rng, now)` is the contract: a list of exactly 100 records, each drawn from one
uniform r in [0, 1). `GET /ads` returns it as a JSON array; `GET /health` returns 200 "ok"; `GET /stats` returns
`{"ads_requests": N}`, the number of `/ads` calls served so far.

Modes of the server (`python -m northwind_elt.local.ads_api --host 127.0.0.1 --port N ...`):

- live (default): a new unseeded `random.Random()` and `time.time()`, so every call differs,
  as the real API does;
- `--fixture PATH`: serves that file byte for byte on every call (tests);
- faults for tests: `--fail-with STATUS` answers `/ads` with that HTTP status, `--malformed`
  answers 200 with a body that is not JSON.

It prints one line, ``listening on http://HOST:PORT``, once it accepts connections, and serves
until SIGTERM (or Ctrl-C). `start()` / `stop()` run it as a child process for tests and jobs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

RECORDS_PER_RESPONSE = 100
AD_GROUPS = ("marketing", "recruiting", "brand", "investment")
ORIGINS = ("manual", "automatic")
UNKNOWN_CAMPAIGN = "__unknown"
MALFORMED_BODY = b'[{"ad_id": "0c5c7fd0-a6a3-4450-a513-270e269e0d37", "ad_group": '
READY_PREFIX = "listening on "
START_TIMEOUT_S = 30.0


def api_response(rng: random.Random, now: float) -> list[dict[str, Any]]:
    """100 ad records, as the third-party API returns them.

    Per record, in this order: r = rng.random(); ad_id from 128 random bits (as UUID4);
    ad_group uniform (independent of r); ad_scheme's origin uniform, drawn only if r > 0.8.
    `random.Random(7)` with now = 1705363200.123456 gives shared/data/ads-api/sample_response.json.
    """
    records = []
    for _ in range(RECORDS_PER_RESPONSE):
        r = rng.random()
        record: dict[str, Any] = {
            "ad_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "ad_group": rng.choice(AD_GROUPS),
            "ad_campaign": int(r * 1000) if r > 0.5 else UNKNOWN_CAMPAIGN,
            "shown_at": now - math.floor(r * 100000),
        }
        if r > 0.8:
            record["ad_scheme"] = {"origin": rng.choice(ORIGINS), "approved": r > 0.7}
        records.append(record)
    return records


class _Stop(Exception):
    """Raised in the main thread by SIGTERM to leave serve_forever."""


def make_server(
    host: str, port: int, *, fixture: Path | None = None, fail_with: int | None = None, malformed: bool = False
) -> ThreadingHTTPServer:
    """A bound (not yet serving) HTTP server in the mode asked for."""
    fixture_body = fixture.read_bytes() if fixture is not None else None
    rng = random.Random()  # unseeded, like the real API  # noqa: S311 - test data, not security
    rng_lock = threading.Lock()
    requests = [0]  # GET /ads answered so far (GET /stats tells; tests check "the API is called once")

    def ads_body() -> bytes:
        if fixture_body is not None:
            return fixture_body
        with rng_lock:
            records = api_response(rng, time.time())
        return json.dumps(records).encode()

    class Handler(BaseHTTPRequestHandler):
        server_version = "ads-api/1"

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/health":
                self._send(200, b"ok", "text/plain; charset=utf-8")
            elif path == "/stats":
                self._send(200, json.dumps({"ads_requests": requests[0]}).encode(), "application/json")
            elif path == "/ads":
                with rng_lock:
                    requests[0] += 1
                if fail_with is not None:
                    body = json.dumps({"error": f"injected failure {fail_with}"}).encode()
                    self._send(fail_with, body, "application/json")
                elif malformed:
                    self._send(200, MALFORMED_BODY, "application/json")
                else:
                    self._send(200, ads_body(), "application/json")
            else:
                self._send(404, b'{"error": "not found"}', "application/json")

        def log_message(self, format: str, *args: Any) -> None:  # quiet: the caller owns stderr
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    # A stop closes the server without waiting for handler threads (a client that keeps its
    # connection open would otherwise hold SIGTERM's exit until SIGKILL).
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m northwind_elt.local.ads_api", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True, help="0 picks a free port (printed in the ready line)")
    parser.add_argument("--fixture", type=Path, help="serve this file byte for byte on GET /ads")
    parser.add_argument("--fail-with", type=int, metavar="STATUS", help="answer GET /ads with this HTTP status")
    parser.add_argument("--malformed", action="store_true", help="answer GET /ads with a body that is not JSON")
    args = parser.parse_args(argv)

    try:
        server = make_server(
            args.host, args.port, fixture=args.fixture, fail_with=args.fail_with, malformed=args.malformed
        )
    except OSError as error:
        print(f"cannot serve on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1

    def on_term(signum: int, frame: object) -> None:
        raise _Stop

    signal.signal(signal.SIGTERM, on_term)
    host, port = server.server_address[:2]
    print(f"{READY_PREFIX}http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except (_Stop, KeyboardInterrupt):
        pass
    finally:
        server.server_close()
    return 0


class ApiProcess(subprocess.Popen):
    """The API server as a child process; `base_url` is set once it is ready."""

    base_url: str


def start(port: int, fixture: Path | str | None = None, **faults: Any) -> ApiProcess:
    """Run the API server with this interpreter on 127.0.0.1:port; return once it accepts connections.

    `faults`: `fail_with=STATUS` and/or `malformed=True`. Raises RuntimeError (with the child's
    stderr) if it exits or stays silent for 30 s instead of printing its ready line.
    """
    argv = [sys.executable, "-m", "northwind_elt.local.ads_api", "--host", "127.0.0.1", "--port", str(port)]
    if fixture is not None:
        argv += ["--fixture", str(Path(fixture).resolve())]
    if faults.get("fail_with") is not None:
        argv += ["--fail-with", str(int(faults.pop("fail_with")))]
    faults.pop("fail_with", None)
    if faults.pop("malformed", False):
        argv.append("--malformed")
    if faults:
        raise TypeError(f"unknown fault(s): {', '.join(sorted(faults))}")
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])  # importable even when not installed
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop(); a file never fills up like a pipe
    proc = ApiProcess(argv, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, text=True, env=env)
    proc._stderr_file = stderr  # type: ignore[attr-defined]
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(START_TIMEOUT_S)
    ready = line[0].strip() if line else ""
    if not ready.startswith(READY_PREFIX):
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        stderr.seek(0)
        detail = stderr.read().decode(errors="replace").strip()
        stderr.close()
        why = "did not become ready in time" if not line else f"exited with status {proc.returncode}"
        raise RuntimeError(f"ads API on 127.0.0.1:{port} {why}: {detail or ready or '(no output)'}")
    proc.base_url = ready[len(READY_PREFIX) :]
    return proc


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server and wait for it (SIGKILL after 30 s: a loaded machine may be slow to run it)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
    stderr = getattr(proc, "_stderr_file", None)
    if stderr is not None:
        stderr.close()


if __name__ == "__main__":
    sys.exit(main())
