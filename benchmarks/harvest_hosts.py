"""Mixed hosts: how fast the other hosts' pictures arrive while one host asks for a Crawl-delay.

One loopback server answers under two names, so the downloader sees two hosts: ``localhost`` (its robots.txt asks
for ``Crawl-delay: --crawl-delay``) and ``127.0.0.1`` (no delay). The URL list interleaves one slow-host picture
every ``--every`` URLs, as a keyword search mixing sites does. Both runs use ``collect`` with the same workers; the
reference hands URLs out in search order (the plain thread pool, ``harvest.schedule.run_unordered``), crowdrank
host by host (``harvest.schedule.run_by_host``). The figure is the fast host's pictures per second, counted up to
its last request, and the ratio crowdrank / in order.

    python benchmarks/harvest_hosts.py --fast 300 --slow 10 --crawl-delay 1 --workers 16
"""

from __future__ import annotations

import argparse
import io
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from PIL import Image


def serve(picture: bytes, crawl_delay: float, latency: float) -> tuple[ThreadingHTTPServer, dict[str, list[float]]]:
    """A server in a thread; returns it and the arrival times of picture requests by host name."""
    arrivals: dict[str, list[float]] = {"localhost": [], "127.0.0.1": []}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            host = self.headers.get("Host", "").split(":")[0]
            if self.path == "/robots.txt":
                body = f"User-agent: *\nCrawl-delay: {crawl_delay}\n".encode() if host == "localhost" else b""
                kind = "text/plain"
            else:
                with lock:
                    arrivals.setdefault(host, []).append(time.monotonic())
                time.sleep(latency)
                body, kind = picture, "image/jpeg"
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, arrivals


def run(urls: list[str], workers: int, in_order: bool) -> float:
    """Seconds ``collect`` took; ``in_order`` swaps the host-by-host scheduler for the plain thread pool."""
    import harvest.collect as collect_module
    from harvest.fetch import FetchConfig
    from harvest.pool import Pool
    from harvest.schedule import run_unordered
    from harvest.sources.base import Candidate

    original = collect_module.run_by_host
    if in_order:
        collect_module.run_by_host = lambda fn, items, n, limiter, **_: run_unordered(fn, items, n)
    try:
        config = FetchConfig(workers=workers, host_rate=0, allow_private_hosts=True, show_progress=False, min_side=8)
        candidates = [Candidate(url=url, source="bench", query="mixed") for url in urls]
        with tempfile.TemporaryDirectory() as tmp:
            started = time.monotonic()
            summary = collect_module.collect(Pool.create(Path(tmp) / "pool"), candidates, config)
            elapsed = time.monotonic() - started
        assert summary.ok == len(urls), summary.counts
    finally:
        collect_module.run_by_host = original
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fast", type=int, default=300, help="pictures on the host without a delay")
    parser.add_argument("--slow", type=int, default=10, help="pictures on the host asking for a Crawl-delay")
    parser.add_argument("--crawl-delay", type=float, default=1.0)
    parser.add_argument("--latency-ms", type=float, default=20.0, help="added to each picture request")
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args()

    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (90, 120, 150)).save(buffer, "JPEG")
    server, arrivals = serve(buffer.getvalue(), args.crawl_delay, args.latency_ms / 1000)
    port = server.server_address[1]
    every = max(1, args.fast // max(1, args.slow))
    results = {}
    for name, in_order in (("in search order (thread pool)", True), ("host by host (crowdrank)", False)):
        urls, slow_left = [], args.slow
        for k in range(args.fast):  # each name its own paths: every URL is new to the pool
            urls.append(f"http://127.0.0.1:{port}/{name[:4]}/fast/{k}.jpg")
            if k % every == 0 and slow_left:
                urls.append(f"http://localhost:{port}/{name[:4]}/slow/{k}.jpg")
                slow_left -= 1
        for times in arrivals.values():
            times.clear()
        started = time.monotonic()
        total = run(urls, args.workers, in_order)
        fast_done = max(arrivals["127.0.0.1"]) - started
        results[name] = args.fast / fast_done
        print(
            f"{name:32s} fast host: {args.fast} pictures in {fast_done:6.2f} s ({results[name]:7.1f}/s); "
            f"whole run {total:6.2f} s ({args.slow} slow pictures, Crawl-delay {args.crawl_delay:g} s)"
        )
    server.shutdown()
    ratio = results["host by host (crowdrank)"] / results["in search order (thread pool)"]
    print(f"fast-host pictures per second, crowdrank / in search order: {ratio:.2f}x")


if __name__ == "__main__":
    main()
