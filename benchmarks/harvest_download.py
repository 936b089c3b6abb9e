"""Download throughput: crowdrank's downloader against a sequential loop, a thread-pool loop and img2dataset.

A loopback HTTP server (its own process) serves N distinct JPEGs, each answer delayed by ``--latency-ms`` to
stand in for a distant host. Every method downloads the same URL list with the same concurrency; the script
prints images per second, lost images (URLs not saved with the exact bytes) and each rate relative to
crowdrank's. img2dataset runs when ``--img2dataset-python`` names a Python that can import it (keep it in its
own virtualenv: its pins would change this project's).

    python benchmarks/harvest_download.py --images 1000 --latency-ms 50 --workers 16 \
        --img2dataset-python /tmp/img2ds-venv/bin/python
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import multiprocessing
import os
import shutil
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import requests
from PIL import Image


def make_images(folder: Path, count: int, seed: int = 0) -> dict[str, str]:
    """``count`` distinct 400x300 JPEGs (gradient plus noise, ~20-40 KB); returns name -> sha256."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 180, 400, dtype=np.float32)[None, :, None]
    digests = {}
    for i in range(count):
        path = folder / f"{i:05d}.jpg"
        if not path.exists():
            noise = rng.normal(0, 18, (300, 400, 3)).astype(np.float32)
            pixels = np.clip(ramp + noise + (i * 7) % 60, 0, 255).astype(np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, "JPEG", quality=85)
            path.write_bytes(buffer.getvalue())
        digests[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def serve(folder: str, latency: float, port_queue: Any) -> None:
    """Serve ``folder`` on 127.0.0.1 with ``latency`` seconds before each answer (runs in its own process)."""
    files = {f"/img/{p.name}": p.read_bytes() for p in Path(folder).glob("*.jpg")}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else headers and body go out apart and delayed ACKs add ~40 ms

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            time.sleep(latency)
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "image/jpeg" if body is not None else "text/plain")
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.request_queue_size = 256
    port_queue.put(server.server_address[1])
    server.serve_forever()


def lost(saved: dict[str, bytes], digests: dict[str, str]) -> int:
    """URLs not saved with exactly the served bytes."""
    return sum(1 for name, digest in digests.items() if name not in saved or _sha(saved[name]) != digest)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def run_sequential(urls: list[str], out: Path) -> dict[str, bytes]:
    saved = {}
    with requests.Session() as session:
        for url in urls:
            response = session.get(url, timeout=30)
            if response.ok:
                (out / url.rsplit("/", 1)[1]).write_bytes(response.content)
                saved[url.rsplit("/", 1)[1]] = response.content
    return saved


def run_thread_pool(urls: list[str], out: Path, workers: int) -> dict[str, bytes]:
    local = threading.local()

    def get(url: str) -> tuple[str, bytes | None]:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        response = local.session.get(url, timeout=30)
        if not response.ok:
            return url, None
        (out / url.rsplit("/", 1)[1]).write_bytes(response.content)
        return url, response.content

    with ThreadPoolExecutor(workers) as pool:
        return {url.rsplit("/", 1)[1]: body for url, body in pool.map(get, urls) if body is not None}


def run_crowdrank(urls: list[str], out: Path, workers: int) -> dict[str, bytes]:
    from harvest.collect import collect
    from harvest.fetch import FetchConfig
    from harvest.pool import Pool
    from harvest.sources.base import Candidate

    pool = Pool.create(out / "pool")
    config = FetchConfig(workers=workers, host_rate=0, min_side=0, allow_private_hosts=True, show_progress=False)
    collect(pool, (Candidate(url=url, source="bench", query="bench") for url in urls), config)
    df = pool.read_index()
    ok = df[df["status"] == "ok"]
    pairs = zip(ok["url"], ok["path"], strict=True)
    return {url.rsplit("/", 1)[1]: pool.path_of(path).read_bytes() for url, path in pairs}


IMG2DATASET_RUN = """
import json, sys, time
from pathlib import Path
from img2dataset import download
url_list, output, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
start = time.perf_counter()
download(url_list=url_list, input_format="txt", output_folder=output, output_format="files", processes_count=1,
         thread_count=workers, resize_mode="no", disable_all_reencoding=True, timeout=30, retries=0,
         number_sample_per_shard=100000, enable_wandb=False, distributor="multiprocessing")
elapsed = time.perf_counter() - start
print(json.dumps({"elapsed": elapsed}))
"""


def run_img2dataset(python: str, urls: list[str], out: Path, workers: int) -> tuple[dict[str, bytes], float]:
    """img2dataset in its own interpreter; the time is measured inside it, around ``download()`` only."""
    url_list = out / "urls.txt"
    url_list.write_text("\n".join(urls) + "\n")
    result = subprocess.run(
        [python, "-c", IMG2DATASET_RUN, str(url_list), str(out / "files"), str(workers)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"},  # no update check over the network
    )
    elapsed = json.loads(result.stdout.strip().splitlines()[-1])["elapsed"]
    saved = {}
    for meta in (out / "files").rglob("*.json"):
        record = json.loads(meta.read_text())
        image = meta.with_suffix(".jpg")
        if record.get("status") == "success" and image.exists():
            saved[record["url"].rsplit("/", 1)[1]] = image.read_bytes()
    return saved, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--sequential-images", type=int, default=100, help="the sequential loop takes a prefix")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--img2dataset-python", default=None, help="a Python that can `import img2dataset`")
    parser.add_argument("--out", type=Path, default=Path("bench-out/harvest_download"))
    args = parser.parse_args()

    import harvest.collect  # noqa: F401  (import before the clock starts, as the loops' requests already is)

    digests = make_images(args.out / "served", args.images)
    ctx = multiprocessing.get_context("spawn")
    ports = ctx.Queue()
    server = ctx.Process(target=serve, args=(str(args.out / "served"), args.latency_ms / 1000, ports), daemon=True)
    server.start()
    base = f"http://127.0.0.1:{ports.get(timeout=60)}"
    urls = [f"{base}/img/{name}" for name in sorted(digests)]

    results = []

    def record(method: str, count: int, saved: dict[str, bytes], seconds: float) -> None:
        subset = {name: digests[name] for name in sorted(digests)[:count]}
        results.append({"method": method, "images": count, "ok": len(saved), "lost": lost(saved, subset),
                        "seconds": round(seconds, 3), "images_per_s": round(count / seconds, 1)})  # fmt: skip
        print(json.dumps(results[-1]), flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for method, count, runner in [
            ("sequential requests", args.sequential_images, lambda d, u: run_sequential(u, d)),
            (f"ThreadPoolExecutor x{args.workers}", args.images, lambda d, u: run_thread_pool(u, d, args.workers)),
            (f"crowdrank collect x{args.workers}", args.images, lambda d, u: run_crowdrank(u, d, args.workers)),
        ]:
            folder = work / method.split()[0]
            folder.mkdir()
            start = time.perf_counter()
            saved = runner(folder, urls[:count])
            record(method, count, saved, time.perf_counter() - start)
        if args.img2dataset_python:
            folder = work / "img2dataset"
            folder.mkdir()
            saved, seconds = run_img2dataset(args.img2dataset_python, urls, folder, args.workers)
            record(f"img2dataset 1 process x{args.workers} threads", args.images, saved, seconds)
        shutil.rmtree(work, ignore_errors=True)
    server.terminate()

    crowdrank = next(r for r in results if r["method"].startswith("crowdrank"))
    mean_kb = np.mean([p.stat().st_size for p in (args.out / "served").glob("*.jpg")]) / 1000
    print(f"\n{args.images} JPEGs of {mean_kb:.0f} KB on average, {args.latency_ms:g} ms added latency per request")
    print(f"{'method':<40} {'images':>7} {'ok':>6} {'lost':>5} {'s':>8} {'img/s':>8} {'crowdrank / it':>15}")
    for r in results:
        ratio = crowdrank["images_per_s"] / r["images_per_s"]
        print(f"{r['method']:<40} {r['images']:>7} {r['ok']:>6} {r['lost']:>5} {r['seconds']:>8.2f} "
              f"{r['images_per_s']:>8.1f} {ratio:>14.2f}x")  # fmt: skip
    (args.out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
