"""The published FERD detectors and FE, re-implemented as faithfully as the specification allows:
per-pixel Python loops over NumPy, and the FEN in PyTorch eager mode.

This is the *baseline* of ``compare_published.py`` (speed ratio, same process, same threads),
never a part of ``fencli``. It follows ``reference/ferd_architecture.md`` step by step; its AUCs
are checked against ``auc_reference.json`` by the comparison script before any timing is trusted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _minmax(x: np.ndarray) -> np.ndarray:
    return (x - x.min()) / (x.max() - x.min())


def grx(data: np.ndarray) -> np.ndarray:
    """Published GRX: ``B x H x W`` in, ``H x W`` out; pinv of the unbiased covariance, pixel loop."""
    b, h, w = data.shape
    x = _minmax(data).reshape(b, h * w)
    mu = x.mean(axis=1)
    s_inv = np.linalg.pinv(np.cov(x))
    out = np.zeros(h * w)
    for i in range(h * w):
        d = x[:, i] - mu
        out[i] = d @ s_inv @ d
    return out.reshape(h, w)


def _stats(pix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and ``inv(S + 1e-6 I)`` of ``B x n`` pixels, float32 like the reference."""
    mu = pix.mean(axis=1)
    cov = np.cov(pix).astype(np.float32) + np.float32(1e-6) * np.eye(pix.shape[0], dtype=np.float32)
    return mu, np.linalg.inv(cov)


def _dist(v: np.ndarray, mu: np.ndarray, inv: np.ndarray) -> float:
    d = v - mu
    return float(np.sqrt(max(d @ inv @ d, 0.0)))


def slrx(data: np.ndarray, block_num: int = 25) -> np.ndarray:
    """Published SLRX: fixed blocks of ``B // block_num`` pixels, three Mahalanobis maps (block,
    surround, image), each min-max scaled, multiplied. Pixel loop inside a block loop."""
    b, h, w = data.shape
    bs = b // block_num
    x = _minmax(data.astype(np.float32)).astype(np.float32)
    g_mu, g_inv = _stats(x.reshape(b, -1))
    m_local = np.zeros((h, w), np.float32)
    m_sur = np.zeros((h, w), np.float32)
    m_glob = np.zeros((h, w), np.float32)
    for r0 in range(0, h, bs):
        for c0 in range(0, w, bs):
            r1, c1 = min(r0 + bs, h), min(c0 + bs, w)
            blk = x[:, r0:r1, c0:c1].reshape(b, -1)
            l_mu, l_inv = _stats(blk)
            sur = [x[:, i:i + bs, j:j + bs].reshape(b, -1)
                   for i in range(max(0, r0 - bs), min(h, r1 + bs), bs)
                   for j in range(max(0, c0 - bs), min(w, c1 + bs), bs) if (i, j) != (r0, c0)]
            s_stats = _stats(np.concatenate(sur, axis=1)) if sur else None
            for r in range(r0, r1):
                for c in range(c0, c1):
                    v = x[:, r, c]
                    m_local[r, c] = _dist(v, l_mu, l_inv)
                    m_glob[r, c] = _dist(v, g_mu, g_inv)
                    if s_stats is not None:
                        m_sur[r, c] = _dist(v, *s_stats)
    return _minmax(m_local) * _minmax(m_sur) * _minmax(m_glob)


def load_fen(checkpoint_dir: str | Path):
    """PyTorch eager FEN from a published checkpoint folder (``convh.pt``, ``enc.pt``, ``pc.pt``)."""
    import torch

    from export.fen import FEN

    d = Path(checkpoint_dir)
    sd = {}
    for part in ("convh", "enc", "pc"):
        sd.update(torch.load(d / f"{part}.pt", weights_only=True, map_location="cpu")["state_dict"])
    bands = sd["convh.weight"].shape[1]
    model = FEN(bands, variant="supp" if d.name.endswith("supp") else "plain")
    model.load_state_dict({k: v for k, v in sd.items() if not k.startswith("conv3.")})
    return model.eval()


def fe(model, cube: np.ndarray) -> np.ndarray:
    """Published FE step: ``H x W x bands`` -> enhanced ``B x H x W`` float32 (the detectors' input)."""
    import torch

    from fencli.preprocess import fen_input

    x = torch.from_numpy(fen_input(cube[:, :, :model.bands]))
    with torch.inference_mode():
        return model(x)[0].numpy()
