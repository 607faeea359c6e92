"""The statistics that reports and A/B tests share: one test, one way of saying
its result, the same thresholds for workflows and campaigns."""

import math

# Below this many contacts per variant the z-test's normal approximation (and any
# conclusion) is not to be trusted.
MIN_PER_VARIANT = 30
SIGNIFICANCE = 0.05


def two_proportion_z_test(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float]:
    """(z, two-sided p) of the pooled two-proportion z-test of x2/n2 against x1/n1.

    With no variation at all (nobody or everybody converted) there is no evidence of
    a difference: (0.0, 1.0).
    """
    if not n1 or not n2:
        return 0.0, 1.0
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 0.0, 1.0
    z = (x2 / n2 - x1 / n1) / se
    return z, math.erfc(abs(z) / math.sqrt(2))


def format_p(p: float) -> str:
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.3f}" if p < 0.01 else f"p = {p:.2f}"
