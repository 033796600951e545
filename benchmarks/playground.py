"""The playground's latency: start the real server (`minitransfer playground`)
as a user would, then time, over HTTP:

* start-up: process start until the server answers (load + compile);
* the first candidates request after that, and the steady state of the same
  request (median of 50, each with a different text so nothing is cached);
* generation: tokens/s of a streamed 100-token continuation.

Run by hand (not in CI): python benchmarks/playground.py [--model DIR]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="default: the shipped checkpoint")
    ap.add_argument("--requests", type=int, default=50)
    args = ap.parse_args()
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = ["minitransfer", "playground", "--port", str(port)] + (["--model", args.model] if args.model else [])
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                httpx.get(url + "/api/info", timeout=1.0)
                break
            except httpx.TransportError:
                if proc.poll() is not None:
                    print(proc.stdout.read())
                    return 1
                time.sleep(0.05)
        up = time.perf_counter() - t0
        t = time.perf_counter()
        r = httpx.post(url + "/api/candidates", json={"text": "The movie was"})
        first = time.perf_counter() - t
        assert r.status_code == 200, r.text
        lat = []
        for i in range(args.requests):
            t = time.perf_counter()
            httpx.post(url + "/api/candidates", json={"text": f"Review {i}: the acting was"}).raise_for_status()
            lat.append(time.perf_counter() - t)
        t = time.perf_counter()
        n = 0
        with httpx.stream("POST", url + "/api/generate", json={"text": "I", "max_new_tokens": 100, "seed": 1},
                          timeout=60) as resp:
            for line in resp.iter_lines():
                if line.startswith("data: "):
                    ev = json.loads(line[6:])
                    n += "id" in ev
                    server_tps = ev.get("tokens_per_second", None) if ev.get("done") else None
        gen = time.perf_counter() - t
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"start-up (process start -> server answers, load + compile): {up:.2f} s")
    print(f"first candidates request: {1000 * first:.1f} ms; start-up + first response: {up + first:.2f} s (aim < 5 s)")
    print(f"steady state, {args.requests} requests: median {1000 * statistics.median(lat):.1f} ms, "
          f"p90 {1000 * sorted(lat)[int(0.9 * len(lat))]:.1f} ms (aim < 100 ms)")
    print(f"generation: {n} tokens streamed in {gen:.2f} s over HTTP = {n / gen:.1f} tokens/s"
          + (f" (server-side {server_tps:.1f} tokens/s)" if server_tps else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
