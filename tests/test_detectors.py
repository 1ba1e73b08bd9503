"""RX detectors: slow spec-literal references, known answers, degenerate inputs, shared-scene AUCs."""

from __future__ import annotations

import numpy as np
import pytest

from fencli.detectors import DETECTORS, RXStats, grx, lrx, slrx
from fencli.errors import FencliError
from fencli.metrics import roc_auc
from tests.conftest import SCENES, load_shared_scene, planted_scene

BAND_COUNTS = {"ferd-50": 50, "ferd-100": 100, "ferd-200": 200}


def _unit(cube: np.ndarray) -> np.ndarray:
    cube = np.asarray(cube, dtype=np.float64)
    return (cube - cube.min()) / (cube.max() - cube.min())


def _cov(pixels: np.ndarray) -> np.ndarray:
    """Unbiased covariance; 0 for fewer than 2 pixels (the detectors' documented rule)."""
    if pixels.shape[0] < 2:
        return np.zeros((pixels.shape[1], pixels.shape[1]))
    return np.cov(pixels, rowvar=False)


def _to01(m: np.ndarray) -> np.ndarray:
    return np.ones_like(m) if m.max() == m.min() else (m - m.min()) / (m.max() - m.min())


def slrx_loop(cube: np.ndarray, bs: int, ridge: float = 1e-6) -> np.ndarray:
    """The spec's SLRX, literally: per block, per pixel, explicit inverses (float64)."""
    x = _unit(cube)
    h, w, b = x.shape
    eye = ridge * np.eye(b)
    flat = x.reshape(-1, b)
    mf, icf = flat.mean(0), np.linalg.inv(_cov(flat) + eye)
    maps = np.zeros((3, h, w))
    for r0 in range(0, h, bs):
        for c0 in range(0, w, bs):
            r1, c1 = min(r0 + bs, h), min(c0 + bs, w)
            blk = x[r0:r1, c0:c1].reshape(-1, b)
            mb, icb = blk.mean(0), np.linalg.inv(_cov(blk) + eye)
            sur = [x[i:i + bs, j:j + bs].reshape(-1, b)
                   for i in range(max(0, r0 - bs), min(h, r1 + bs), bs)
                   for j in range(max(0, c0 - bs), min(w, c1 + bs), bs) if (i, j) != (r0, c0)]
            if sur:
                s = np.concatenate(sur)
                ms, ics = s.mean(0), np.linalg.inv(_cov(s) + eye)
            for i in range(r0, r1):
                for j in range(c0, c1):
                    p = x[i, j]
                    maps[0, i, j] = np.sqrt(max(0.0, (p - mb) @ icb @ (p - mb)))
                    if sur:
                        maps[1, i, j] = np.sqrt(max(0.0, (p - ms) @ ics @ (p - ms)))
                    maps[2, i, j] = np.sqrt(max(0.0, (p - mf) @ icf @ (p - mf)))
    return _to01(maps[0]) * _to01(maps[1]) * _to01(maps[2])


def lrx_loop(cube: np.ndarray, inner: int, outer: int, ridge: float = 0.0,
             pinv: bool = False) -> np.ndarray:
    """Dual-window RX per pixel, windows shifted inside the image (Spectral Python's rule)."""
    x = _unit(cube)
    h, w, b = x.shape
    out = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            oi, oj = np.clip(i - outer // 2, 0, h - outer), np.clip(j - outer // 2, 0, w - outer)
            ii, ij = np.clip(i - inner // 2, 0, h - inner), np.clip(j - inner // 2, 0, w - inner)
            mask = np.zeros((h, w), bool)
            mask[oi:oi + outer, oj:oj + outer] = True
            mask[ii:ii + inner, ij:ij + inner] = False
            bg = x[mask]
            d = x[i, j] - bg.mean(0)
            inverse = np.linalg.pinv if pinv else np.linalg.inv
            out[i, j] = d @ inverse(_cov(bg) + ridge * np.eye(b)) @ d
    return out


def _pinv_rx(cube: np.ndarray) -> np.ndarray:
    x = _unit(cube).reshape(-1, cube.shape[2])
    d = x - x.mean(0)
    scores = np.einsum("ij,jk,ik->i", d, np.linalg.pinv(np.cov(x, rowvar=False)), d)
    return scores.reshape(cube.shape[:2])


def _top_k_is_planted(scores: np.ndarray, gt: np.ndarray) -> bool:
    k = int(gt.sum())
    top = np.argsort(scores.ravel())[-k:]
    return bool(gt.ravel()[top].all())


# ---------------------------------------------------------------- GRX and RXStats

def test_grx_equals_pinv_formula_and_finds_planted_pixels():
    cube, gt = planted_scene()
    scores = grx(cube)
    np.testing.assert_allclose(scores, _pinv_rx(cube), rtol=1e-8, atol=1e-9)
    assert _top_k_is_planted(scores, gt)
    assert scores.dtype == np.float64 and scores.shape == gt.shape


def test_grx_float32_scores_after_float64_statistics():
    cube, gt = planted_scene()
    ints = np.round(cube * 1000).astype(np.uint16)
    fast = grx(ints, float32_scores=True)
    np.testing.assert_allclose(fast, grx(ints), rtol=1e-4)
    assert _top_k_is_planted(fast, gt)
    dup = np.concatenate([cube, cube[:, :, :4]], axis=2)  # pinv path, float32 GEMM
    np.testing.assert_allclose(grx(dup, float32_scores=True), _pinv_rx(dup), rtol=1e-3, atol=1e-4)


def test_grx_singular_covariance_follows_pinv():
    cube, gt = planted_scene(bands=12)
    constant = np.full(cube.shape[:2] + (1,), 7.0, np.float32)
    cube = np.concatenate([cube, cube[:, :, :5], constant], axis=2)
    scores = grx(cube)  # duplicated bands and a constant band: rank 12 of 18
    assert np.isfinite(scores).all()
    np.testing.assert_allclose(scores, _pinv_rx(cube), rtol=1e-6, atol=1e-8)
    assert _top_k_is_planted(scores, gt)


def test_grx_integer_input_and_invariance_to_the_range():
    cube, _ = planted_scene()
    ints = np.round(cube * 1000).astype(np.uint16)
    np.testing.assert_allclose(grx(ints), grx(ints.astype(np.float64) * 3.5 - 2.0), rtol=1e-8)
    np.testing.assert_allclose(grx(ints, vrange=(0.0, 65535.0)), grx(ints), rtol=1e-8)


def test_rxstats_chunked_equals_in_memory():
    cube, _ = planted_scene(h=37, w=29, bands=16)
    ints = np.round(cube * 1000).astype(np.uint16)
    vrange = (float(ints.min()), float(ints.max()))
    rows = [ints[:5], ints[5:6], ints[6:30], ints[30:]]  # uneven tiles, one a single row
    stats = RXStats(16, vrange).fit(iter(rows))
    whole = RXStats(16, vrange).fit(ints)
    assert stats.n == whole.n == 37 * 29
    np.testing.assert_allclose(stats.covariance, whole.covariance, rtol=1e-10, atol=1e-15)
    direct = np.cov(_unit(ints).reshape(-1, 16), rowvar=False)
    np.testing.assert_allclose(stats.covariance, direct, rtol=1e-9)
    partial = [RXStats(16, vrange).fit(tile) for tile in rows]
    merged = partial[2].merge(partial[0]).merge(partial[3]).merge(partial[1])
    np.testing.assert_allclose(merged.covariance, whole.covariance, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(merged.mean, whole.mean, rtol=1e-12)
    streamed = np.concatenate([stats.score(tile) for tile in rows])
    np.testing.assert_allclose(streamed, grx(ints), rtol=1e-9)
    white = stats.whitening()[0]
    np.testing.assert_allclose(white.T @ white, np.linalg.pinv(stats.raw_covariance), rtol=1e-7, atol=1e-6)


def test_rxstats_whitener_on_singular_covariance():
    cube, _ = planted_scene(bands=8)
    cube = np.concatenate([cube, cube[:, :, :3] * 2.0], axis=2)
    stats = RXStats(11).fit(cube)
    white = stats.whitening()[0]
    assert white.shape == (8, 11)  # rank 8
    np.testing.assert_allclose(white.T @ white, np.linalg.pinv(stats.raw_covariance), rtol=1e-6, atol=1e-6)


def test_constant_spectra_are_an_error():
    with pytest.raises(FencliError, match="same spectrum"):
        grx(np.ones((4, 5, 3)) * np.arange(3))
    with pytest.raises(FencliError, match="at least 2 pixels"):
        RXStats(3).fit(np.ones((1, 3))).whitening()[0]
    with pytest.raises(FencliError, match=r"3 bands, got an array of shape \(4, 2\)"):
        RXStats(3).fit(np.ones((4, 2)))


# ---------------------------------------------------------------- SLRX

@pytest.mark.parametrize("shape,bs", [((13, 11, 6), 3), ((10, 9, 20), 4), ((7, 8, 5), 2),
                                      ((5, 6, 4), 1), ((9, 7, 1), 3), ((6, 7, 2), 3)])
def test_slrx_equals_spec_loop(shape, bs):
    rng = np.random.default_rng(sum(shape) + bs)
    cube = rng.random(shape) + np.linspace(0, 1, shape[2])
    np.testing.assert_allclose(slrx(cube, block_size=bs), slrx_loop(cube, bs), rtol=1e-6, atol=1e-7)


def test_slrx_threads_split_block_rows_without_changing_the_maps(monkeypatch):
    from fencli import threads

    cube, _ = planted_scene(h=45, w=37, bands=24, n_anomalies=4, seed=5)
    monkeypatch.setattr(threads, "cores", lambda: 1)
    one = slrx(cube, block_size=4)
    monkeypatch.setattr(threads, "cores", lambda: 3)  # three bands of block rows, 12 rows in all
    np.testing.assert_array_equal(slrx(cube, block_size=4), one)  # the scene's scatter: two fixed halves


def test_grx_halves_give_the_same_bits_on_one_core_or_two(monkeypatch):
    """GRX sums the scatter of two fixed halves of the rows, on two threads only where there are two
    cores: the scores do not depend on the machine, and they match the spec's one-pass loop."""
    from fencli import threads

    cube, _ = planted_scene(h=31, w=17, bands=9, n_anomalies=3, seed=12)
    monkeypatch.setattr(threads, "cores", lambda: 1)
    one = grx(cube)
    monkeypatch.setattr(threads, "cores", lambda: 2)
    two = grx(cube)
    np.testing.assert_array_equal(two, one)
    x = cube.reshape(-1, 9).astype(np.float64)
    d = x - x.mean(axis=0)
    want = np.einsum("ij,jk,ik->i", d, np.linalg.pinv(np.cov(x, rowvar=False)), d)
    np.testing.assert_allclose(two.ravel(), want, rtol=1e-9)


def test_parallel_raises_the_first_error_after_every_thread_ends():
    from fencli.threads import parallel as _parallel

    done = []

    def work(i: int) -> int:
        if i in (1, 2):
            raise ValueError(f"item {i}")
        done.append(i)
        return i

    with pytest.raises(ValueError, match="item 1"):
        _parallel(work, range(4))
    assert sorted(done) == [0, 3]
    assert _parallel(lambda a, b: a * b, [2, 3], [4, 5]) == [8, 15] and _parallel(work, []) == []


def test_slrx_rows_go_to_the_thread_that_is_free(monkeypatch):
    """Two threads take block rows from both ends until they meet: a thread slowed by other work
    takes fewer rows (a fixed split would give each half), and the maps do not change."""
    import threading
    import time

    from fencli import threads
    from fencli.detectors import patch_rx as slrx_module

    cube, _ = planted_scene(h=48, w=20, bands=12, n_anomalies=3, seed=8)  # 12 block rows of 4 px
    monkeypatch.setattr(threads, "cores", lambda: 1)
    one = slrx(cube, block_size=4)
    taken: dict[int, list[int]] = {}
    row_maps = slrx_module._block_row_maps

    def slowed(rows, top, ridge, maps):
        mine = taken.setdefault(threading.get_ident(), [])
        mine.append(top)
        if mine[0] == 0:  # the thread that started at the top is the slow one
            time.sleep(0.05)
        row_maps(rows, top, ridge, maps)

    monkeypatch.setattr(slrx_module, "_block_row_maps", slowed)
    monkeypatch.setattr(threads, "cores", lambda: 2)
    two = slrx(cube, block_size=4)
    (slow, fast) = sorted(taken.values(), key=lambda tops: tops[0])
    assert sorted(slow + fast) == list(range(0, 48, 4)) and len(slow) < len(fast)
    np.testing.assert_array_equal(two, one)


@pytest.mark.parametrize("cores", [1, 3])
def test_unit_centered_is_the_minmaxed_cube_minus_its_mean(monkeypatch, cores):
    """One pass over row bands equals the two-pass ``minmax01`` then centring, for a Fortran-ordered
    uint16 cube (as a .mat arrives) and with a given mean (the tiled path's background mean)."""
    from fencli import detectors, threads
    from fencli.preprocess import minmax01

    monkeypatch.setattr(threads, "cores", lambda: cores)
    cube = np.asfortranarray(np.random.default_rng(3).integers(100, 9000, (7, 5, 6), dtype=np.uint16))
    unit = minmax01(cube)
    want = unit - unit.mean(axis=(0, 1))
    got = detectors.unit_centered(cube)
    assert got.flags.c_contiguous and got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)
    mean = np.full(6, 4000.0)
    np.testing.assert_allclose(detectors.unit_centered(cube, (100, 9000), mean),
                               minmax01(cube, (100, 9000)) - (4000.0 - 100) / 8900, rtol=0, atol=1e-15)


@pytest.mark.parametrize("n,b", [(64, 200), (256, 50), (2, 5)])
def test_own_block_distances_against_an_svd(n, b):
    """(n - 1) sum_j lambda_j / (lambda_j + c) u_ij^2 from the SVD of the centred block: the exact
    value that the Cholesky route computes as (n - 1)(1 - c [(K + cI)^-1]_ii)."""
    from fencli.detectors.patch_rx import _own_block_distances

    rng = np.random.default_rng(n + b)
    x = rng.random((3, n, b)) * np.linspace(0.1, 1, b)
    x -= x.mean(axis=1, keepdims=True)
    c = (n - 1) * 1e-6
    want = np.empty((3, n))
    for k in range(3):
        u, sv, _ = np.linalg.svd(x[k], full_matrices=False)
        want[k] = (n - 1) * (u**2 * (sv**2 / (sv**2 + c))).sum(axis=1)
    np.testing.assert_allclose(_own_block_distances(x, 1e-6), want, rtol=1e-9, atol=1e-12)


def test_lapack_routines_equal_scipys_wrappers_bit_for_bit():
    from scipy.linalg import lapack as sl

    from fencli import lapack

    rng = np.random.default_rng(0)
    x = rng.random((30, 12))
    a = np.asfortranarray(x.T @ x + 12 * np.eye(12))
    low, info = sl.dpotrf(a, lower=1, clean=0)
    assert info == 0 and lapack.potrf_lower(a) == 0
    np.testing.assert_array_equal(np.tril(a), np.tril(low))
    inv, info = sl.dtrtri(low, lower=1)
    assert info == 0 and lapack.trtri_lower(a) == 0
    np.testing.assert_array_equal(np.tril(a), np.tril(inv))
    with pytest.raises(ValueError, match="column-major float64"):
        lapack.potrf_lower(np.zeros((3, 3), dtype=np.float32))


def test_rfp_routines_equal_scipys_wrappers_bit_for_bit():
    from scipy.linalg import lapack as sl

    from fencli import lapack

    rng = np.random.default_rng(1)
    x = rng.random((30, 12))  # pixels; x.T is the column-major 12 x 30 matrix
    mu = x.mean(axis=0)
    rfp = np.empty(lapack.rfp_size(12))
    lapack.sfrk_lower(1.0, x.T, 0.0, rfp)
    want = sl.dsfrk(12, 30, 1.0, x.T, 0.0, np.zeros(78), uplo="L")
    np.testing.assert_array_equal(rfp, want)
    full, info = sl.dtfttr(12, want, uplo="L")  # the RFP holds X^T X's lower triangle
    np.testing.assert_allclose(np.tril(full), np.tril(x.T @ x), rtol=1e-13)
    lapack.sfrk_lower(-30.0, mu[:, None], 1.0, rfp)  # the scatter about the mean
    want = sl.dsfrk(12, 1, -30.0, mu[:, None], 1.0, want, uplo="L")
    np.testing.assert_array_equal(rfp, want)
    rfp[lapack.rfp_diagonal(12)] += np.arange(12.0)  # in order: entry i on row i
    np.testing.assert_array_equal(np.diag(sl.dtfttr(12, rfp, uplo="L")[0]) - np.diag(sl.dtfttr(12, want, uplo="L")[0]),
                                  np.arange(12.0))
    low, info = sl.dpftrf(12, rfp.copy(), uplo="L")
    assert info == 0 and lapack.pftrf_lower(rfp) == 0
    np.testing.assert_array_equal(rfp, low)
    y = np.asfortranarray(x - mu)  # rows x -> L^-1 x
    lapack.tfsm_rows(rfp, y)
    np.testing.assert_array_equal(y, sl.dtfsm(1.0, low, x - mu, side="R", uplo="L", trans="T"))
    with pytest.raises(ValueError, match="RFP"):
        lapack.pftrf_lower(np.zeros(77))
    assert lapack.pftrf_lower(np.zeros(78)) > 0  # not positive definite: LAPACK's info, no exception


def test_lapack_refuses_a_routine_whose_signature_differs(monkeypatch):
    from fencli import lapack

    args = lapack._ARGS["dpotrf"]
    monkeypatch.setitem(lapack._ARGS, "dpotrf", args[:-1])  # as if SciPy's took one argument more
    lapack._routine.cache_clear()
    try:
        with pytest.raises(FencliError, match=r"SciPy's dpotrf has a signature SLRX cannot call: void \(char \*"):
            lapack._routine("dpotrf")
    finally:
        lapack._routine.cache_clear()


def test_slrx_default_block_size_divides_bands():
    cube, _ = planted_scene(h=20, w=18, bands=30)  # 30 // 10 = 3 px blocks, edge blocks 2 and 0
    np.testing.assert_allclose(slrx(cube, block_num=10), slrx_loop(cube, 3), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(slrx(cube, block_num=10), slrx(cube, block_size=3), rtol=0, atol=0)


def test_slrx_finds_planted_pixels():
    cube, gt = planted_scene(h=40, w=48, bands=30, n_anomalies=6, seed=3)
    scores = slrx(cube, block_size=8)
    assert _top_k_is_planted(scores, gt)
    assert roc_auc(scores, gt) == 1.0


def test_slrx_single_block_has_no_surround():
    rng = np.random.default_rng(1)
    cube = rng.random((6, 5, 4))
    for bs in (6, 50):  # exactly one block, and a block larger than the image
        scores = slrx(cube, block_size=bs)
        np.testing.assert_allclose(scores, slrx_loop(cube, bs), rtol=1e-6, atol=1e-7)
        assert np.isfinite(scores).all() and scores.max() == 1.0


def test_slrx_bad_options():
    cube = np.random.default_rng(0).random((6, 6, 10))
    with pytest.raises(FencliError, match="block size must be at least 1"):
        slrx(cube)  # 10 bands // 25 = 0
    with pytest.raises(FencliError, match="ridge must be positive"):
        slrx(cube, block_size=2, ridge=0.0)


# ---------------------------------------------------------------- LRX

@pytest.mark.parametrize("shape,inner,outer,ridge",
                         [((12, 10, 5), 3, 7, 0.0), ((9, 11, 12), 1, 5, 1e-4)])
def test_lrx_equals_per_pixel_loop(shape, inner, outer, ridge):
    rng = np.random.default_rng(shape[2])
    cube = rng.random(shape) + np.linspace(0, 2, shape[2])
    np.testing.assert_allclose(lrx(cube, inner, outer, ridge), lrx_loop(cube, inner, outer, ridge),
                               rtol=1e-7, atol=1e-9)


def test_lrx_column_slabs_on_threads_give_the_whole_scenes_scores(monkeypatch):
    from fencli import threads

    rng = np.random.default_rng(7)
    cube = rng.random((12, 40, 6)) + np.linspace(0, 1, 6)
    monkeypatch.setattr(threads, "cores", lambda: 1)
    one = lrx(cube, inner=3, outer=7)
    np.testing.assert_allclose(one, lrx_loop(cube, 3, 7), rtol=1e-8)
    monkeypatch.setattr(threads, "cores", lambda: 3)  # three slabs of 13-14 columns, 3 px of halo
    np.testing.assert_allclose(lrx(cube, inner=3, outer=7), one, rtol=1e-9)


def test_lrx_singular_background_follows_pinv():
    rng = np.random.default_rng(9)
    cube = rng.random((9, 10, 4))
    cube = np.concatenate([cube, cube[:, :, :2]], axis=2)  # duplicated bands: rank 4 of 6
    scores = lrx(cube, 1, 5)
    assert np.isfinite(scores).all()
    np.testing.assert_allclose(scores, lrx_loop(cube, 1, 5, pinv=True), rtol=1e-6, atol=1e-8)


def test_lrx_equals_spectral_python():
    spectral = pytest.importorskip("spectral")
    rng = np.random.default_rng(5)
    cube = rng.random((11, 12, 6)) + np.linspace(0, 1, 6)
    expected = spectral.rx(_unit(cube), window=(3, 7))  # float32 output
    np.testing.assert_allclose(lrx(cube, 3, 7), expected, rtol=2e-5)


def test_lrx_finds_planted_pixels_and_rejects_small_windows():
    cube, gt = planted_scene(h=30, w=32, bands=12, n_anomalies=5, seed=2)
    assert _top_k_is_planted(lrx(cube, 3, 9), gt)
    with pytest.raises(FencliError, match="8 pixels for 12 bands"):
        lrx(cube, 1, 3)  # 8 background pixels for 12 bands, no ridge
    with pytest.raises(FencliError, match="must be odd"):
        lrx(cube, 4, 9)


def test_tiny_float32_input_like_the_supp_fen_output():
    cube, gt = planted_scene(h=24, w=26, bands=16, n_anomalies=4, seed=4)
    tiny = (cube * 1e-4).astype(np.float32)  # the supp FEN output is ~1e-4: only min-max fixes scale
    for det, kwargs in ((grx, {}), (slrx, {"block_size": 6}), (lrx, {"inner": 3, "outer": 9})):
        np.testing.assert_allclose(det(tiny, **kwargs), det(cube.astype(np.float64), **kwargs),
                                   rtol=2e-3, atol=2e-3)
        assert _top_k_is_planted(det(tiny, **kwargs), gt)


def test_every_registered_detector_runs_and_finds_the_planted_pixels():
    cube, gt = planted_scene(h=30, w=34, bands=12, n_anomalies=3, seed=3)
    for name, det in DETECTORS.items():
        kwargs = {"block_size": 6} if name == "slrx" else {"windows": (3, 9)} if name == "lrx" else {}
        assert _top_k_is_planted(det(**kwargs).fit(cube).score(cube), gt), name


# ---------------------------------------------------------------- shared scenes

def _reference_cases():
    return [(s, ck) for s in SCENES for ck in BAND_COUNTS]


def _reference_scene(scene, checkpoint, auc_reference):
    """(first-B-bands cube, ground truth) of a shared scene; skips when it has too few bands."""
    if checkpoint not in auc_reference[scene]:
        pytest.skip(f"{scene} has fewer than {BAND_COUNTS[checkpoint]} bands")
    cube, gt = load_shared_scene(scene)
    return cube[:, :, :BAND_COUNTS[checkpoint]], gt


@pytest.mark.shared
@pytest.mark.parametrize("scene,checkpoint", _reference_cases())
def test_grx_auc_matches_reference(scene, checkpoint, auc_reference):
    cube, gt = _reference_scene(scene, checkpoint, auc_reference)
    ref = auc_reference[scene][checkpoint]["GRX"]["auc"]
    assert roc_auc(grx(cube), gt) == pytest.approx(ref, abs=1e-5)
    assert roc_auc(grx(cube, float32_scores=True), gt) == pytest.approx(ref, abs=1e-5)


# The reference computes SLRX in float32. Its 2-pixel blocks (50 bands) hold 4 pixels in 50 bands,
# so the block map is float32 rounding noise: rerun here, the published code's HYDICE block map alone
# is near chance and its product differs from its own recorded AUC by 0.002. We compute the maps
# exactly (float64, Woodbury), which lifts that case well above the recorded value.
SLRX_FLOAT32_NOISE = {("hydice", "ferd-50")}


@pytest.mark.shared
@pytest.mark.parametrize("scene,checkpoint", _reference_cases())
def test_slrx_auc_matches_reference(scene, checkpoint, auc_reference):
    cube, gt = _reference_scene(scene, checkpoint, auc_reference)
    auc = roc_auc(slrx(cube), gt)
    ref = auc_reference[scene][checkpoint]["SLRX"]["auc"]
    if (scene, checkpoint) in SLRX_FLOAT32_NOISE:
        assert auc > ref + 0.05  # the exact block map helps; float32 noise does not
    else:
        assert auc == pytest.approx(ref, abs=0.002)
