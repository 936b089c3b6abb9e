"""Benchmark: near-duplicate grouping of random-plus-perturbed 64-bit hash pairs (pHash + dHash).

For each size N, 90% of the hashes are uniform random and 10% are copies of random others with 0..t+2
bits flipped in each hash (some within the threshold, some just outside). It reports the grouping time
(multi-index hashing with a radius search per band, :mod:`harvest.hash_index`; wall and CPU seconds, and the
1-minute load average of the machine while it ran, since other jobs share the cores), the band plan, and
on a subset the recall and precision against exact brute force (computed with torch on ``--device``)
together with the speed ratio brute force / banded on that subset.

    python benchmarks/dedup_hashes.py --sizes 100000 1000000 --thresholds 8 10 --subset 20000 --device cpu
"""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc

import numpy as np

SECONDS_PER_COST = 4e-9  # one unit of harvest.hash_bands.plan_bands' cost (one probe), measured on 2 shared CPU cores


def perturbed_hashes(rng: np.random.Generator, n: int, threshold: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` (pHash, dHash) pairs: uniform, with 10% copies of other items flipped by 0..threshold+2 bits."""
    phash = rng.integers(0, 2**63, n, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, n, dtype=np.uint64)
    dhash = rng.integers(0, 2**63, n, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, n, dtype=np.uint64)
    copies = rng.choice(n, size=n // 10, replace=False)
    originals = rng.integers(0, n, size=len(copies))
    for hashes in (phash, dhash):
        flips = rng.integers(0, threshold + 3, size=len(copies))
        masks = np.zeros(len(copies), dtype=np.uint64)
        for bit_round in range(int(flips.max()) + 1):
            bits = rng.integers(0, 64, size=len(copies)).astype(np.uint64)
            masks |= np.where(flips > bit_round, np.uint64(1) << bits, np.uint64(0))
        hashes[copies] = hashes[originals] ^ masks
    return phash, dhash


def brute_force_pairs(phash: np.ndarray, dhash: np.ndarray, threshold: int, device: str) -> set[tuple[int, int]]:
    """Exact all-pairs search over blocks of rows: numpy popcount on CPU, a 16-bit lookup table in torch elsewhere."""
    from harvest.hash_bands import hamming

    found: set[tuple[int, int]] = set()
    block = 1024
    if device == "cpu":
        for start in range(0, len(phash), block):
            close = (hamming(phash[start : start + block, None], phash[None, :]) <= threshold) & (
                hamming(dhash[start : start + block, None], dhash[None, :]) <= threshold
            )  # (block, N)
            rows, cols = np.nonzero(close)
            rows = rows + start
            keep = rows < cols
            found.update(zip(rows[keep].tolist(), cols[keep].tolist(), strict=True))
        return found
    import torch

    table = torch.tensor([bin(v).count("1") for v in range(1 << 16)], dtype=torch.int16, device=device)

    def popcount(x: torch.Tensor) -> torch.Tensor:
        return sum(table[(x >> shift) & 0xFFFF] for shift in (0, 16, 32, 48))

    p = torch.from_numpy(phash.view(np.int64)).to(device)
    d = torch.from_numpy(dhash.view(np.int64)).to(device)
    for start in range(0, len(p), block):
        close = (popcount(p[start : start + block, None] ^ p[None, :]) <= threshold) & (
            popcount(d[start : start + block, None] ^ d[None, :]) <= threshold
        )  # (block, N)
        rows, cols = torch.nonzero(close, as_tuple=True)
        rows = rows + start
        keep = rows < cols
        found.update(zip(rows[keep].tolist(), cols[keep].tolist(), strict=True))
    return found


def main() -> None:
    from harvest.dedup import near_duplicate_groups, near_duplicate_pairs
    from harvest.hash_bands import plan_bands

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--thresholds", type=int, nargs="+", default=[8, 10])
    parser.add_argument("--subset", type=int, default=20_000, help="items checked against brute force")
    parser.add_argument("--device", default="cpu", help="torch device of the brute-force reference")
    parser.add_argument("--repeats", type=int, default=1, help="time each (N, t) cell this many times")
    parser.add_argument("--max-seconds", type=float, default=600, help="skip (N, t) cells predicted slower")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--dense",
        type=int,
        nargs="*",
        default=[5_000, 50_000],
        help="also time one dense cluster of this many near-identical hashes (frames of one scene)",
    )
    parser.add_argument("--dense-reference", type=int, default=5_000, help="largest dense size also run exhaustively")
    args = parser.parse_args()

    print(f"{'N':>9} {'t':>3} {'plan':>20} {'group s':>8} {'cpu s':>7} {'load':>5} {'groups>1':>9} | "
          f"{'subset':>7} {'recall':>7} {'precision':>9} {'banded s':>9} {'brute s':>8} {'brute/banded':>12} "
          f"{'brute@N (est) s':>15}")  # fmt: skip
    for threshold in args.thresholds:
        rng = np.random.default_rng(args.seed)
        sub_p, sub_d = perturbed_hashes(rng, args.subset, threshold)
        start = time.perf_counter()
        i, j = near_duplicate_pairs(sub_p, sub_d, threshold, threshold)
        banded_s = time.perf_counter() - start
        start = time.perf_counter()
        expected = brute_force_pairs(sub_p, sub_d, threshold, args.device)
        brute_s = time.perf_counter() - start
        found = set(zip(i.tolist(), j.tolist(), strict=True))
        recall = len(found & expected) / max(len(expected), 1)
        precision = len(found & expected) / max(len(found), 1)
        for n in args.sizes:
            plan = plan_bands(threshold, n, n, self_join=True)
            widths = "/".join(str(width) for _, width in plan.bands)
            radii = "/".join(str(radius) for radius in plan.radii)
            predicted_s = plan.cost * SECONDS_PER_COST
            if predicted_s > args.max_seconds:
                print(f"{n:>9} {threshold:>3} {widths + ' r' + radii:>20} skipped (predicted ~{predicted_s:.0f} s)")
                continue
            phash, dhash = perturbed_hashes(np.random.default_rng(args.seed + n), n, threshold)
            for _ in range(args.repeats):
                load_before = os.getloadavg()[0]
                cpu_start, start = time.process_time(), time.perf_counter()
                labels = near_duplicate_groups(phash, dhash, threshold, threshold)
                group_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
                load = (load_before + os.getloadavg()[0]) / 2
                groups = int((np.bincount(labels) > 1).sum())
                brute_at_n = brute_s * (n / args.subset) ** 2
                print(f"{n:>9} {threshold:>3} {widths + ' r' + radii:>20} {group_s:>8.2f} {cpu_s:>7.2f} {load:>5.1f} "
                      f"{groups:>9} | {args.subset:>7} {recall:>7.4f} {precision:>9.4f} {banded_s:>9.3f} "
                      f"{brute_s:>8.3f} {brute_s / banded_s:>12.1f} {brute_at_n:>15.0f}", flush=True)  # fmt: skip
    for n in args.dense:
        dense_cluster(n, args.seed, exhaustive=n <= args.dense_reference)


def dense_cluster(n: int, seed: int, exhaustive: bool) -> None:
    """One cluster of ``n`` distinct hashes, each 3 bits from a common base in pHash and dHash (every pair within
    t = 10): the grouping against the reference of every pair then its components (the method before the
    component-by-component search), in the same run. Peak memory is traced numpy/Python allocation (tracemalloc)."""
    from harvest.dedup import group_labels, near_duplicate_groups, near_duplicate_pairs

    rng = np.random.default_rng(seed)
    bases = rng.integers(0, 2**63, 2, dtype=np.uint64)
    bits = rng.integers(0, 64, size=(2, n, 3)).astype(np.uint64)
    phash, dhash = bases[:, None] ^ np.bitwise_or.reduce(np.uint64(1) << bits, axis=2)
    tracemalloc.start()
    start = time.perf_counter()
    labels = near_duplicate_groups(phash, dhash, 10, 10)
    grouped_s = time.perf_counter() - start
    grouped_mb = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    line = f"dense cluster of {n:,}: {len(np.unique(labels))} group(s) in {grouped_s:.2f} s, peak {grouped_mb:.0f} MB"
    if exhaustive:
        tracemalloc.start()
        start = time.perf_counter()
        i, j = near_duplicate_pairs(phash, dhash, 10, 10)
        same = group_labels(n, i, j)
        pairs_s = time.perf_counter() - start
        pairs_mb = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        assert len(np.unique(same)) == len(np.unique(labels))
        line += (
            f"; every pair ({len(i):,}) then components: {pairs_s:.2f} s, peak {pairs_mb:.0f} MB, "
            f"time ratio {pairs_s / grouped_s:.1f}x"
        )
    print(line, flush=True)


if __name__ == "__main__":
    main()
