"""Statistics for paired base-vs-candidate comparisons and for the gate's rules (all through scipy).

- `paired`: McNemar's exact test, the paired permutation test, the seeded paired
  bootstrap and Holm's adjustment;
- `binary`: exact (Clopper-Pearson) and score (Tango) intervals and their one-sided
  p-values for pass/fail metrics;
- `power`: exact decision probabilities of the rules, the smallest detectable
  regression and the n a rule needs.

See docs/gate-statistics.md for the methods, their references and the calibration.
"""

from tunegate.compare.stats.binary import (
    TANGO_CC,
    PairedCounts,
    binomial_pvalues,
    clopper_pearson,
    tango_interval,
    tango_pvalues,
    tango_z,
)
from tunegate.compare.stats.paired import (
    DEFAULT_RESAMPLES,
    Bootstrap,
    McNemar,
    holm,
    mcnemar_exact,
    paired_bootstrap,
    paired_permutation_pvalue,
)
from tunegate.compare.stats.power import (
    PLANNING_REDRAW,
    binomial_decision_probs,
    normal_decision_probs,
    paired_decision_probs,
    redraw_cells,
    smallest_n,
    smallest_shift,
)

__all__ = [
    "DEFAULT_RESAMPLES", "PLANNING_REDRAW", "TANGO_CC", "Bootstrap", "McNemar", "PairedCounts",
    "binomial_decision_probs", "binomial_pvalues", "clopper_pearson", "holm", "mcnemar_exact",
    "normal_decision_probs", "paired_bootstrap", "paired_decision_probs", "paired_permutation_pvalue",
    "redraw_cells", "smallest_n", "smallest_shift", "tango_interval", "tango_pvalues", "tango_z",
]
