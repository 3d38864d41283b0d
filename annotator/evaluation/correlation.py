"""Rank correlation between a measurement and an expert score (quantification vs severity scores)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats


def spearman(x: Sequence[float], y: Sequence[float]) -> dict:
    """Spearman's rho with its n, two-sided p value and a 95% interval (Fisher z, se = 1.03/sqrt(n-3)).

    Pairs with a NaN on either side are dropped; fewer than 3 pairs, or a constant side, give NaN.
    """
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"{a.size} measurements but {b.size} scores")
    ok = ~(np.isnan(a) | np.isnan(b))
    a, b = a[ok], b[ok]
    n = int(a.size)
    nan = {"rho": float("nan"), "p": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": n}
    if n < 3 or np.all(a == a[0]) or np.all(b == b[0]):
        return nan
    res = stats.spearmanr(a, b)
    rho = float(res.statistic)
    out = {"rho": rho, "p": float(res.pvalue), "n": n}
    if n > 3 and abs(rho) < 1:
        z = math.atanh(rho)
        se = 1.03 / math.sqrt(n - 3)
        out["ci_low"], out["ci_high"] = math.tanh(z - 1.96 * se), math.tanh(z + 1.96 * se)
    else:
        out["ci_low"] = out["ci_high"] = rho
    return out
