import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve as sk_roc_curve

from fencli.errors import FencliError
from fencli.metrics import roc3d, roc_auc, roc_curve


@pytest.mark.parametrize("seed", range(4))
def test_auc_and_curve_equal_sklearn_with_ties(seed):
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
    assert m["auc_df"] == 1.0
    assert m["auc_dt"] == pytest.approx(1.0) and m["auc_ft"] == pytest.approx(0.25)
    assert m["snpr"] == pytest.approx(4.0)


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
