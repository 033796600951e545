"""The playground's latency: start the real server (`minitransfer playground`)
as a user would, then time, over HTTP:

* start-up: process start until the server answers (load + compile), twice:
  with an empty compilation cache (a first launch) and with the programs the
  first launch left there (every later launch; see "The compilation cache" in
  docs/development.md);
* the first candidates request after that, and the steady state of the same
  request (median of 50, each with a different text so nothing is cached);
* generation: tokens/s of a streamed 100-token continuation.

Run by hand (not in CI): python benchmarks/playground.py [--model DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def start(cmd: list[str], env: dict) -> tuple[subprocess.Popen, str, float]:
    """Start the server; wait until it answers. Returns (process, url, seconds)."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd + ["--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    url = f"http://127.0.0.1:{port}"
    while True:
        try:
            httpx.get(url + "/api/info", timeout=1.0)
            return proc, url, time.perf_counter() - t0
        except httpx.TransportError:
            if proc.poll() is not None:
                raise SystemExit(f"the server stopped before answering:\n{proc.stdout.read()}") from None
            time.sleep(0.05)


def first_candidates(url: str) -> float:
    import httpx

    t = time.perf_counter()
    r = httpx.post(url + "/api/candidates", json={"text": "The movie was"})
    assert r.status_code == 200, r.text
    return time.perf_counter() - t


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(timeout=30)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="default: the shipped checkpoint")
    ap.add_argument("--requests", type=int, default=50)
    args = ap.parse_args()
    import httpx

    cmd = ["minitransfer", "playground"] + (["--model", args.model] if args.model else [])
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "MINITRANSFER_COMPILATION_CACHE": cache}
        env.pop("JAX_COMPILATION_CACHE_DIR", None)
        proc, url, cold_up = start(cmd, env)  # an empty cache: compiles everything
        try:
            cold_first = first_candidates(url)
        finally:
            stop(proc)
        proc, url, up = start(cmd, env)  # the programs of the first launch are in the cache now
        try:
            first = first_candidates(url)
            lat = []
            for i in range(args.requests):
                t = time.perf_counter()
                httpx.post(url + "/api/candidates", json={"text": f"Review {i}: the acting was"}).raise_for_status()
                lat.append(time.perf_counter() - t)
            t = time.perf_counter()
            n, server_tps = 0, None
            with httpx.stream(
                "POST", url + "/api/generate", json={"text": "I", "max_new_tokens": 100, "seed": 1}, timeout=60
            ) as resp:
                for line in resp.iter_lines():
                    if line.startswith("data: "):
                        ev = json.loads(line[6:])
                        n += "id" in ev
                        server_tps = ev.get("tokens_per_second", None) if ev.get("done") else server_tps
            gen = time.perf_counter() - t
        finally:
            stop(proc)
    for name, u, f in (
        ("first launch (empty compilation cache)", cold_up, cold_first),
        ("next launch (programs from the cache)", up, first),
    ):
        print(
            f"{name}: start-up (process start -> server answers, load + compile) {u:.2f} s; first candidates "
            f"request {1000 * f:.1f} ms; together {u + f:.2f} s (aim < 5 s)"
        )
    print(
        f"steady state, {args.requests} requests: median {1000 * statistics.median(lat):.1f} ms, "
        f"p90 {1000 * sorted(lat)[int(0.9 * len(lat))]:.1f} ms (aim < 100 ms)"
    )
    print(
        f"generation: {n} tokens streamed in {gen:.2f} s over HTTP = {n / gen:.1f} tokens/s"
        + (f" (server-side {server_tps:.1f} tokens/s)" if server_tps else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
