"""The statistics' shared constants and the notes every report prints beside its tests."""
from __future__ import annotations

ALPHA = 0.05
LEVEL = 0.95

WELCH_NOTE = (
    "The paper's significance test is an unspecified \"Student t-test\"; over seeds we use "
    "Welch's two-sided t-test (unequal variances, scipy.stats.ttest_ind(equal_var=False)), "
    "Cohen's d with the pooled standard deviation as its effect size."
)

PAIRED_NOTE = (
    "Paired over users: per-user metric values averaged over each model's seeds, compared "
    "user by user with a two-sided paired t-test (scipy.stats.ttest_rel; effect size = mean "
    "paired difference with its 95% t-interval) and the Wilcoxon signed-rank test "
    "(scipy.stats.wilcoxon, zero differences dropped; p = 1 when every difference is zero)."
)

HOLM_NOTE = (
    "p-values are Holm–Bonferroni adjusted within each table (the family is every test of "
    "the same kind in that table); 'significant' means adjusted p < 0.05."
)

LENGTH_RULE = (
    "Sequence-length groups: q20, q40, q60, q80 = numpy.quantile(hist_len, [.2, .4, .6, .8]) "
    "(default linear interpolation) over the dataset's evaluated users, hist_len = the test-time "
    "history length before truncation. Groups are half-open on the left: G1 = [min, q20], "
    "G2 = (q20, q40], G3 = (q40, q60], G4 = (q60, q80], G5 = (q80, max] (group index = "
    "numpy.searchsorted(q, hist_len, side='left')), so a length equal to a boundary falls in the "
    "lower group. With many ties (short-sequence data) a group can still be empty; it is then "
    "shown as missing."
)

