from fractions import Fraction

import numpy as np
import pytest

from fencli.errors import FencliError
from fencli.metrics import roc3d, roc_auc, roc_curve

trapezoid = getattr(np, "trapezoid", None) or np.trapz  # NumPy 2 renamed it


@pytest.mark.parametrize("seed", range(4))
def test_auc_and_curve_equal_sklearn_with_ties(seed):
    sk = pytest.importorskip("sklearn.metrics", reason="scikit-learn (dev) is the oracle here; "
                             "test_3d_roc_areas_equal_a_threshold_sweep checks the same without it")
    roc_auc_score, sk_roc_curve = sk.roc_auc_score, sk.roc_curve
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 15, size=(20, 30)).astype(float)  # many ties
    gt = rng.random((20, 30)) < 0.1
    assert roc_auc(scores, gt) == pytest.approx(roc_auc_score(gt.ravel(), scores.ravel()), abs=1e-12)
    pf, pd, _ = roc_curve(scores, gt)
    fpr, tpr, _ = sk_roc_curve(gt.ravel(), scores.ravel(), drop_intermediate=False)
    np.testing.assert_allclose(pf, fpr)
    np.testing.assert_allclose(pd, tpr)


def test_known_answers():
    gt = np.array([[0, 0, 1, 1]])
    assert roc_auc(np.array([[0.0, 1, 2, 3]]), gt) == 1.0
    assert roc_auc(np.array([[3.0, 2, 1, 0]]), gt) == 0.0
    assert roc_auc(np.array([[1.0, 1, 1, 1]]), gt) == 0.5
    m = roc3d(np.array([[0.0, 2, 4, 4]]), gt)  # normalized: 0, .5, 1, 1
    assert m == pytest.approx({"auc_df": 1.0, "auc_dt": 1.0, "auc_ft": 0.25, "auc_td": 2.0, "auc_bs": 0.75,
                               "auc_odp": 1.75, "auc_tdbs": 0.75, "snpr": 4.0}, abs=1e-12)
    # by hand: normalized 0, .75, .25, .5, 1; targets .75 and .5 beat 2 of the 3 background pixels each
    m = roc3d(np.array([[0.0, 3, 1, 2, 4]]), np.array([[0, 1, 0, 1, 0]]))
    df, dt, ft = Fraction(4, 6), Fraction(5, 8), Fraction(5, 12)  # P_D(tau) and P_F(tau) areas = means
    want = {"auc_df": df, "auc_dt": dt, "auc_ft": ft, "auc_td": df + dt, "auc_bs": df - ft,
            "auc_odp": dt + 1 - ft, "auc_tdbs": dt - ft, "snpr": dt / ft}
    assert m == pytest.approx({k: float(v) for k, v in want.items()}, abs=1e-12)


def sweep_3d_roc(scores: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Chang's 3D-ROC areas the long way, independent of fencli.metrics: min-max normalize, sweep the
    threshold tau over every distinct score, take P_D and P_F (score >= tau) at each, then

    - AUC(D,F): the trapezoid under the (P_F, P_D) points, from (0, 0) to (1, 1);
    - AUC(D,tau), AUC(F,tau): the step functions P(tau) integrated over [0, 1] interval by interval
      (constant on (t_{i-1}, t_i]), checked against a dense trapezoid grid.
    """
    s = np.asarray(scores, float).ravel()
    y = np.asarray(gt).ravel() != 0
    s = (s - s.min()) / (s.max() - s.min())
    taus = np.unique(s)  # ascending
    pd = np.array([(s[y] >= t).mean() for t in taus])
    pf = np.array([(s[~y] >= t).mean() for t in taus])
    auc_df = trapezoid(np.r_[0.0, pd[::-1]], np.r_[0.0, pf[::-1]])  # pd, pf reach 1 at the lowest tau
    widths = np.diff(np.r_[0.0, taus])  # P(s >= tau) = P(s >= t_i) for tau in (t_{i-1}, t_i]
    auc_dt, auc_ft = float(widths @ pd), float(widths @ pf)
    grid = np.linspace(0.0, 1.0, 20001)
    dense = [trapezoid([(v >= t).mean() for t in grid], grid) for v in (s[y], s[~y])]
    assert dense == pytest.approx([auc_dt, auc_ft], abs=2e-4)  # the interval sum is the integral
    return {"auc_df": auc_df, "auc_dt": auc_dt, "auc_ft": auc_ft, "auc_td": auc_df + auc_dt,
            "auc_bs": auc_df - auc_ft, "auc_odp": auc_dt + 1 - auc_ft, "auc_tdbs": auc_dt - auc_ft,
            "snpr": auc_dt / auc_ft}


@pytest.mark.parametrize("seed", range(4))
def test_3d_roc_areas_equal_a_threshold_sweep(seed):
    """Every 3D-ROC area against :func:`sweep_3d_roc`, on ties (integer scores) and on continuous ones."""
    rng = np.random.default_rng(seed)
    gt = rng.random((20, 30)) < 0.1
    ties = rng.integers(0, 15, size=gt.shape).astype(float) + 3 * gt  # many ties, targets higher
    smooth = rng.gamma(2.0, size=gt.shape) + 1.5 * gt * rng.random(gt.shape) - 7.0
    for scores in (ties, smooth):
        got, want = roc3d(scores, gt), sweep_3d_roc(scores, gt)
        assert set(got) == set(want)
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12)
        assert roc_auc(scores, gt) == pytest.approx(want["auc_df"], abs=1e-12)
        assert 0.5 < want["auc_df"] < 1 and 0 < want["auc_ft"] < want["auc_dt"] < 1  # a real detector's


def test_bad_ground_truth():
    with pytest.raises(FencliError, match="shape"):
        roc_auc(np.zeros((3, 3)), np.zeros((3, 4)))
    with pytest.raises(FencliError, match="both"):
        roc_auc(np.arange(9.0).reshape(3, 3), np.zeros((3, 3)))


@pytest.mark.parametrize("seed", range(3))
def test_rankdata_equals_scipy_mid_ranks(seed):
    """fencli's NumPy rankdata (no scipy.stats at start-up) gives scipy's 'average' ranks exactly."""
    from scipy.stats import rankdata as scipy_rankdata

    from fencli.metrics import rankdata

    rng = np.random.default_rng(seed)
    for values in (rng.integers(0, 7, 500).astype(float), rng.normal(size=300), np.ones(5), np.array([2.0])):
        np.testing.assert_array_equal(rankdata(values), scipy_rankdata(values))


def test_nan_scores_give_nan_auc():
    scores = np.arange(12.0).reshape(3, 4)
    scores[1, 1] = np.nan
    gt = np.zeros((3, 4))
    gt[0, 0] = 1
    assert np.isnan(roc_auc(scores, gt))
