"""Size of the Diebold-Mariano test: how often each long-run variance rule rejects at alpha 0.05 when
there is no true difference, on simulated per-bar loss differences (the figures in
docs/CHAMPION_SELECTION.md, "The statistics").

Cases, each ``--series`` series of ``--bars`` bars: MA(h - 1) differences (the sum of h consecutive
independent normals, what labels over h bars overlapping make) for h = 1, 5, 20; and two no-skill
models on a random-walk price with the label "up over the next 20 bars", whose probabilities are
persistent (the logistic of 3 x a moving average of W bars of their own noise, W = 50 and 200), tested
on their per-bar log-loss differences. Rules: ``bartlett_h`` (Newey-West weights over h lags, normal
p-value: the rule before), ``uniform_h-1`` (Diebold & Mariano's rectangular kernel over h - 1 lags with
the Harvey-Leybourne-Newbold factor and Student-t(n - 1): the rule in use), ``uniform_max_nw94`` and
``uniform_max_andrews`` (the same with max(h - 1, an automatic bandwidth) lags: Newey & West 1994, or
Andrews 1991's AR(1) plug-in for the Bartlett kernel), and ``genesis_fw``, the package's own
:func:`genesis_fw.ml.evaluation.hac_mean_test` (equal to ``uniform_h-1`` up to its fallback).

    python benchmarks/dm_size.py [--series 3000] [--bars 2000] [--seed 1]

The share of rejections of a test that holds its size is 0.05 +- 0.008 (two standard deviations at
3000 series).
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.stats import norm
from scipy.stats import t as student_t

from genesis_fw.ml.evaluation import hac_mean_test

MAX_LAG = 400


def autocovariances(d: np.ndarray) -> np.ndarray:
    """g_0 .. g_MAX_LAG of each row (divisor n), by FFT."""
    n = d.shape[1]
    dc = d - d.mean(axis=1, keepdims=True)
    f = np.fft.rfft(dc, 2 * n, axis=1)
    return np.fft.irfft(f * f.conj(), 2 * n, axis=1)[:, :MAX_LAG + 1] / n


def p_values(d: np.ndarray, h: int) -> dict[str, np.ndarray]:
    reps, n = d.shape
    g = autocovariances(d)
    mean = d.mean(axis=1)
    j = np.arange(1, MAX_LAG + 1)

    def weighted(lags: np.ndarray, kernel: str) -> np.ndarray:
        lags = np.broadcast_to(lags, (reps,))[:, None]
        w = (j <= lags) if kernel == "uniform" else np.clip(1 - j / (lags + 1), 0, None)
        return g[:, 0] + 2 * (w * g[:, 1:]).sum(axis=1)

    def hln(lags: np.ndarray) -> np.ndarray:
        lags = np.broadcast_to(lags, (reps,))
        s = weighted(lags, "uniform")
        s = np.where(s > 0, s, weighted(2 * lags, "bartlett"))
        hh = lags + 1
        return student_t.cdf(mean / np.sqrt(s / n) * np.sqrt((n - hh) * (n - hh + 1) / n**2), n - 1)

    # Newey & West (1994), Bartlett: pre-whitening lag 4 (n/100)^(2/9), bandwidth 1.1447 (s1/s0)^(2/3) n^(1/3)
    pre = int(4 * (n / 100) ** (2 / 9))
    s0 = g[:, 0] + 2 * g[:, 1:pre + 1].sum(axis=1)
    s1 = 2 * (np.arange(1, pre + 1) * g[:, 1:pre + 1]).sum(axis=1)
    nw94 = np.floor(1.1447 * np.abs(s1 / s0) ** (2 / 3) * n ** (1 / 3)).astype(int)
    # Andrews (1991) AR(1) plug-in for the Bartlett kernel: 1.1447 (alpha(1) n)^(1/3)
    rho = np.clip(g[:, 1] / g[:, 0], -0.97, 0.97)
    andrews = np.floor(1.1447 * (4 * rho**2 / ((1 - rho) ** 2 * (1 + rho) ** 2) * n) ** (1 / 3)).astype(int)
    return {
        "bartlett_h": norm.cdf(mean / np.sqrt(weighted(np.array(h), "bartlett") / n)),
        "uniform_h-1": hln(np.array(h - 1)),
        "uniform_max_nw94": hln(np.minimum(np.maximum(h - 1, nw94), MAX_LAG // 2)),
        "uniform_max_andrews": hln(np.minimum(np.maximum(h - 1, andrews), MAX_LAG // 2)),
        "genesis_fw": np.array([hac_mean_test(row, h)["p_value"] for row in d]),
    }


def ma_differences(rng: np.random.Generator, reps: int, n: int, h: int) -> np.ndarray:
    c = np.cumsum(np.pad(rng.standard_normal((reps, n + h - 1)), ((0, 0), (1, 0))), axis=1)
    return c[:, h:] - c[:, :-h]


def label_differences(rng: np.random.Generator, reps: int, n: int, h: int, window: int) -> np.ndarray:
    price = np.cumsum(rng.standard_normal((reps, n + h)), axis=1)
    y = (price[:, h:] > price[:, :n]).astype(float)

    def loss() -> np.ndarray:
        c = np.cumsum(np.pad(rng.standard_normal((reps, n + window)), ((0, 0), (1, 0))), axis=1)
        p = 1 / (1 + np.exp(-3 * (c[:, window:] - c[:, :-window])[:, :n] / window))
        return -(y * np.log(p) + (1 - y) * np.log1p(-p))

    return loss() - loss()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--series", type=int, default=3000)
    ap.add_argument("--bars", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    cases = [(f"MA({h - 1}), h={h}", h, ma_differences(rng, args.series, args.bars, h)) for h in (1, 5, 20)]
    cases += [(f"labels h=20, W={w}", 20, label_differences(rng, args.series, args.bars, 20, w)) for w in (50, 200)]
    print(f"share of p < 0.05 with no true difference ({args.series} series of {args.bars} bars, seed {args.seed})")
    header = None
    for name, h, d in cases:
        rates = {k: float(np.mean(v < 0.05)) for k, v in p_values(d, h).items()}
        if header is None:
            header = f"{'case':<22}" + "".join(f"{k:>21}" for k in rates)
            print(header)
        print(f"{name:<22}" + "".join(f"{v:>21.4f}" for v in rates.values()))


if __name__ == "__main__":
    main()
