"""The statistics' shared constants and the notes every report prints beside its tests."""
from __future__ import annotations

ALPHA = 0.05
LEVEL = 0.95

HEADLINE_NOTE = (
    "Headline test (seeds and users): a two-level bootstrap that resamples each model's seeds and, "
    "jointly for both models, the test users (2000 replicates; Bouthillier et al., MLSys 2021); "
    "interval and p from its standard error with a Student t reference (Welch–Satterthwaite df of "
    "the seed and user terms); P(A>B) = probability that one new training run of A beats one of B "
    "on new users. A side with one seed takes the other side's seed variance; one seed on both "
    "sides conditions on the trained models. Evaluations of one trained model (x_T = 0, other "
    "reverse steps) are paired within each seed. See docs/statistics.md."
)

WELCH_NOTE = (
    "Over seeds (conditional on these test users): Welch's two-sided t-test (unequal variances, "
    "scipy.stats.ttest_ind(equal_var=False)) with Cohen's d (pooled sample SD); none when a side "
    "has one seed. The paper's test is an unspecified \"Student t-test\"."
)

PAIRED_NOTE = (
    "Over users (conditional on the trained models): per-user values averaged over the seeds "
    "both models ran (the common seeds), a two-sided paired t-test (scipy.stats.ttest_rel, with the "
    "95% t-interval of the mean difference) and the Wilcoxon signed-rank test (scipy.stats.wilcoxon, "
    "zero_method='pratt': zero differences are ranked, not dropped)."
)

HOLM_NOTE = (
    "p-values are Holm–Bonferroni adjusted within the family this report's header declares, each "
    "test kind separately; a comparison shown in another file quotes the same adjusted p "
    "(its family is named); 'significant' means adjusted p < 0.05."
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

