"""The statistics of a campaign readout: treatment against control.

Pure functions of counts and sums (no data access), each stating its method:

- a proportion's interval: Wilson's score interval;
- the difference of two proportions (absolute lift): Newcombe's hybrid score
  interval (Newcombe 1998, method 10: the two Wilson intervals combined), and a
  p-value from the pooled two-proportion z test, or Fisher's exact test when an
  expected cell count is under 5;
- the ratio of two proportions (relative lift): the Katz log interval of the
  risk ratio, minus 1;
- the difference of two means (revenue per customer): Welch's t interval and
  test (unequal variances, Welch-Satterthwaite degrees of freedom); their ratio
  (relative lift): the delta-method interval of the log ratio, minus 1;
- the sample-ratio check: a chi-square goodness-of-fit test (1 degree of
  freedom) of the observed control count against the configured share.

An interval or p-value that is undefined (an empty group, a zero rate in a
ratio, no variance) is None, never a made-up number.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from scipy import stats as sps

LEVEL = 0.95
# a sample-ratio mismatch is flagged below this p-value (the usual threshold:
# strict, since a real experiment has many customers and the check runs often)
SRM_ALPHA = 0.001

WILSON = "Wilson score interval"
NEWCOMBE = "Newcombe hybrid score interval (Wilson, method 10)"
KATZ = "Katz log interval of the risk ratio"
Z_TEST = "two-proportion z test (pooled)"
FISHER = "Fisher's exact test"
WELCH = "Welch t interval and test (unequal variances)"
DELTA_LOG = "delta-method interval of the log ratio of means"
CHI_SQUARE = "chi-square goodness of fit, 1 df"


def z_of(level: float = LEVEL) -> float:
    """The two-sided standard normal quantile of `level` (1.96 for 0.95)."""
    return float(sps.norm.ppf(0.5 + level / 2))


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its interval (None: undefined) and the method."""

    value: float | None
    low: float | None
    high: float | None
    method: str

    def as_dict(self) -> dict:
        return asdict(self)


def wilson(k: int, n: int, level: float = LEVEL) -> Estimate:
    """The proportion k/n with Wilson's score interval."""
    if n <= 0:
        return Estimate(None, None, None, WILSON)
    low, high = _wilson_bounds(k, n, z_of(level))
    return Estimate(k / n, low, high, WILSON)


def _wilson_bounds(k: int, n: int, z: float) -> tuple[float, float]:
    p = k / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe(k1: int, n1: int, k2: int, n2: int, level: float = LEVEL) -> Estimate:
    """p1 - p2 (group 1 minus group 2) with Newcombe's hybrid score interval."""
    if n1 <= 0 or n2 <= 0:
        return Estimate(None, None, None, NEWCOMBE)
    z = z_of(level)
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = _wilson_bounds(k1, n1, z)
    l2, u2 = _wilson_bounds(k2, n2, z)
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return Estimate(d, low, high, NEWCOMBE)


def risk_ratio_lift(
    k1: int, n1: int, k2: int, n2: int, level: float = LEVEL
) -> Estimate:
    """p1 / p2 - 1 (the relative lift) with the Katz log interval; undefined
    when either group has no outcome."""
    if n1 <= 0 or n2 <= 0 or k1 <= 0 or k2 <= 0:
        return Estimate(None, None, None, KATZ)
    ratio = (k1 / n1) / (k2 / n2)
    se = math.sqrt(1 / k1 - 1 / n1 + 1 / k2 - 1 / n2)
    z = z_of(level)
    return Estimate(
        ratio - 1,
        ratio * math.exp(-z * se) - 1,
        ratio * math.exp(z * se) - 1,
        KATZ,
    )


def proportions_test(k1: int, n1: int, k2: int, n2: int) -> tuple[float | None, str]:
    """Two-sided p-value of p1 = p2: the pooled z test, or Fisher's exact test
    when an expected count of the 2x2 table is under 5."""
    if n1 <= 0 or n2 <= 0:
        return None, Z_TEST
    pooled = (k1 + k2) / (n1 + n2)
    expected = [n * q for n in (n1, n2) for q in (pooled, 1 - pooled)]
    if min(expected) < 5:
        table = [[k1, n1 - k1], [k2, n2 - k2]]
        return float(sps.fisher_exact(table).pvalue), FISHER
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    z = (k1 / n1 - k2 / n2) / se
    return math.erfc(abs(z) / math.sqrt(2)), Z_TEST


@dataclass(frozen=True)
class Moments:
    """A group's customers and the sum and sum of squares of a per-customer
    value (revenue): enough for its mean and sample variance."""

    n: int
    total: float
    squares: float

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n > 0 else None

    @property
    def variance(self) -> float | None:
        if self.n < 2:
            return None
        return max(0.0, (self.squares - self.total**2 / self.n) / (self.n - 1))


def mean_interval(m: Moments, level: float = LEVEL) -> Estimate:
    """The mean with its t interval."""
    if m.n < 2:
        return Estimate(m.mean, None, None, "t interval")
    half = float(sps.t.ppf(0.5 + level / 2, m.n - 1)) * math.sqrt(m.variance / m.n)
    return Estimate(m.mean, m.mean - half, m.mean + half, "t interval")


def welch(
    a: Moments, b: Moments, level: float = LEVEL
) -> tuple[Estimate, float | None]:
    """mean(a) - mean(b) with Welch's interval, and the two-sided p-value."""
    if a.n < 2 or b.n < 2:
        d = None if a.mean is None or b.mean is None else a.mean - b.mean
        return Estimate(d, None, None, WELCH), None
    d = a.mean - b.mean
    va, vb = a.variance / a.n, b.variance / b.n
    se = math.sqrt(va + vb)
    if se == 0:
        return Estimate(d, d, d, WELCH), 1.0 if d == 0 else 0.0
    df = (va + vb) ** 2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1))
    half = float(sps.t.ppf(0.5 + level / 2, df)) * se
    p = float(2 * sps.t.sf(abs(d) / se, df))
    return Estimate(d, d - half, d + half, WELCH), p


def ratio_of_means_lift(a: Moments, b: Moments, level: float = LEVEL) -> Estimate:
    """mean(a) / mean(b) - 1 with the delta-method interval of the log ratio;
    undefined unless both means are positive."""
    if a.n < 2 or b.n < 2 or not a.mean or not b.mean or a.mean < 0 or b.mean < 0:
        return Estimate(None, None, None, DELTA_LOG)
    ratio = a.mean / b.mean
    se = math.sqrt(a.variance / (a.n * a.mean**2) + b.variance / (b.n * b.mean**2))
    z = z_of(level)
    return Estimate(
        ratio - 1,
        ratio * math.exp(-z * se) - 1,
        ratio * math.exp(z * se) - 1,
        DELTA_LOG,
    )


@dataclass(frozen=True)
class SampleRatio:
    """The observed control share against the expected one."""

    expected_control_share: float
    observed_control_share: float | None
    chi_square: float | None
    p_value: float | None
    mismatch: bool
    alpha: float = SRM_ALPHA
    method: str = CHI_SQUARE

    def as_dict(self) -> dict:
        return asdict(self)


def sample_ratio(control: int, treatment: int, share: float) -> SampleRatio:
    """Chi-square test of `control` out of control + treatment against the
    expected control `share`; a mismatch when p < SRM_ALPHA (a share of 0 or
    1 expects one group only: any customer in the other is a mismatch)."""
    n = control + treatment
    if n == 0:
        return SampleRatio(share, None, None, None, False)
    observed = control / n
    if share <= 0 or share >= 1:
        wrong = treatment if share >= 1 else control
        return SampleRatio(share, observed, None, None, wrong > 0)
    expected = (n * share, n * (1 - share))
    chi2 = sum(
        (o - e) ** 2 / e for o, e in zip((control, treatment), expected, strict=True)
    )
    p = float(sps.chi2.sf(chi2, 1))
    return SampleRatio(share, observed, chi2, p, p < SRM_ALPHA)
