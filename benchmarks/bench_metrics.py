"""Time lsnc's streaming NC metrics against a plain implementation, in the same run.

    python benchmarks/bench_metrics.py [--n 50000] [--dim 512] [--classes 10 100] [--repeats 3] [--out FILE]

lsnc: float32 features fed in batches to ``FeatureAccumulator`` (float64 statistics, Sigma_B^+ from the
thin SVD of the K x d matrix of centred means), then ``compute``. Plain: all N x d features held in float64,
per-class loops for the means and Sigma_W, a generic ``torch.linalg.pinv`` of the d x d Sigma_B, and a
per-class distance loop for the nearest class centre. Both compute NC1, NC2, NC3 and NC4 on all N samples
(lsnc with ncc_samples >= N) and are checked to agree. Prints a table; writes a CSV only with ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import math
import time

import torch

from lsnc.metrics import FeatureAccumulator


def plain_metrics(H: torch.Tensor, y: torch.Tensor, W: torch.Tensor, b: torch.Tensor, K: int) -> dict:
    H = H.double()
    W, b = W.double(), b.double()
    N, d = H.shape
    means = torch.stack([H[y == k].mean(0) for k in range(K)])
    centred = means - means.mean(0)
    sigma_w = torch.zeros(d, d, dtype=torch.float64)
    for k in range(K):
        D = H[y == k] - means[k]
        sigma_w += D.T @ D
    sigma_w /= N
    sigma_b = centred.T @ centred / K
    nc1 = torch.trace(sigma_w @ torch.linalg.pinv(sigma_b))
    etf = (torch.eye(K, dtype=torch.float64) - 1.0 / K) / math.sqrt(K - 1)
    wh = W @ centred.T
    nc2 = torch.linalg.norm(wh / torch.linalg.norm(wh) - etf)
    nc3 = torch.linalg.norm(W / torch.linalg.norm(W) - centred / torch.linalg.norm(centred)) ** 2
    distances = torch.stack([torch.linalg.norm(H - means[k], dim=1) for k in range(K)], dim=1)
    ncc = distances.argmin(1)
    return {
        "nc1_within_between": nc1.item(),
        "nc2_wh_etf": nc2.item(),
        "nc3_duality_sq": nc3.item(),
        "nc4_ncc_accuracy": (ncc == y).double().mean().item(),
        "nc4_ncc_classifier_agreement": (ncc == (H @ W.T + b).argmax(1)).double().mean().item(),
    }


def lsnc_metrics(H, y, W, b, K, batch_size, ncc_samples) -> dict:
    acc = FeatureAccumulator(K, H.shape[1], ncc_samples=ncc_samples)
    for start in range(0, H.shape[0], batch_size):
        acc.update(H[start:start + batch_size], y[start:start + batch_size])
    return acc.compute(W, b)


def timed_interleaved(fns: dict, repeats: int):
    """Best-of-``repeats`` seconds per function, the functions run in turn within each repeat so that all of
    them see the same machine load (the least noisy estimate on a shared machine)."""
    best = {name: math.inf for name in fns}
    results = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            results[name] = fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best, results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=50_000, help="number of samples N")
    parser.add_argument("--dim", type=int, default=512, help="feature dimension d")
    parser.add_argument("--classes", type=int, nargs="+", default=[10, 100], help="values of K")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many timings")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: as is)")
    parser.add_argument("--out", default=None, help="write the table as CSV here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    rows = []
    for K in args.classes:
        g = torch.Generator().manual_seed(K)
        y = torch.randint(0, K, (args.n,), generator=g)
        centres = torch.randn(K, args.dim, generator=g)
        H = (centres[y] + 2.0 * torch.randn(args.n, args.dim, generator=g)).float()  # as a model emits
        W = torch.randn(K, args.dim, generator=g)
        b = torch.randn(K, generator=g)

        times, results = timed_interleaved({
            "plain": lambda: plain_metrics(H, y, W, b, K),
            "lsnc": lambda: lsnc_metrics(H, y, W, b, K, args.batch_size, args.n),
            "lsnc_ncc10k": lambda: lsnc_metrics(H, y, W, b, K, args.batch_size, 10_000),
        }, args.repeats)
        t_plain, t_lsnc, t_lsnc_sub = times["plain"], times["lsnc"], times["lsnc_ncc10k"]
        plain, ours = results["plain"], results["lsnc"]
        worst = max(abs(ours[k] - v) / max(abs(v), 1e-12) for k, v in plain.items())
        if worst > 1e-8:
            raise SystemExit(f"lsnc and the plain implementation disagree (max relative difference {worst:.2e})")
        state_mb_lsnc = (args.dim ** 2 + 2 * K * args.dim + 10_000 * args.dim) * 8 / 2 ** 20
        state_mb_plain = (args.n * args.dim + args.dim ** 2) * 8 / 2 ** 20
        rows.append({"K": K, "N": args.n, "d": args.dim, "plain_s": t_plain, "lsnc_s": t_lsnc,
                     "lsnc_ncc10k_s": t_lsnc_sub, "speedup": t_plain / t_lsnc,
                     "speedup_ncc10k": t_plain / t_lsnc_sub, "max_rel_diff": worst,
                     "plain_state_mb": state_mb_plain, "lsnc_ncc10k_state_mb": state_mb_lsnc})

    print(f"threads={torch.get_num_threads()} repeats={args.repeats} batch={args.batch_size} (best-of seconds)")
    header = ("K", "N", "d", "plain_s", "lsnc_s", "speedup", "lsnc_ncc10k_s", "speedup_ncc10k", "max_rel_diff",
              "plain_state_mb", "lsnc_ncc10k_state_mb")
    print(" ".join(f"{h:>14}" for h in header))
    for row in rows:
        print(" ".join(f"{row[h]:>14.4g}" if isinstance(row[h], float) else f"{row[h]:>14}" for h in header))
    if args.out:
        with open(args.out, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=header)
            writer.writeheader()
            writer.writerows({h: row[h] for h in header} for row in rows)


if __name__ == "__main__":
    main()
