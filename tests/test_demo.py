"""The README's first command: ``fencli demo`` on the embedded synthetic scene."""

import json
import subprocess
import sys

import pytest

from conftest import ROOT


def run_fencli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "fencli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": ""})


def test_demo_finds_the_planted_targets_and_writes_the_figure(tmp_path):
    png = tmp_path / "demo.png"
    proc = run_fencli("demo", "--model", "none", "--png", png, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["method"] for r in rows] == ["grx", "slrx"]
    assert all(r["shape"] == [100, 100, 200] and r["model"] is None for r in rows)
    auc = {r["method"]: r["auc"] for r in rows}
    # roof-material objects in fields: common spectra, out of place; one pixel alone says little
    assert 0.6 < auc["grx"] < 0.9 and 0.6 < auc["slrx"] < 0.9
    from conftest import pair_auc, rx_reference
    from fencli.synthetic import demo_scene

    cube, gt = demo_scene()  # the raw GRX row is the textbook RX of the embedded scene
    assert auc["grx"] == pytest.approx(pair_auc(rx_reference(cube), gt), abs=1e-9)
    assert png.stat().st_size > 10_000

    again = run_fencli("demo", "--model", "none", "--png", png, cwd=tmp_path)
    assert again.returncode == 2 and "--force" in again.stderr and "Traceback" not in again.stderr
    bad = run_fencli("demo", "--methods", "grx,nope", "--png", tmp_path / "x.png", cwd=tmp_path)
    assert bad.returncode == 2 and "unknown method 'nope'" in bad.stderr


def test_demo_default_shows_the_embedded_fen_beating_raw_grx(tmp_path):
    """Without --model the demo runs raw and FE rows side by side with detect's default, the adaptive FEN."""
    proc = run_fencli("demo", "--methods", "grx", "--png", tmp_path / "d.png", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [(r["method"], r["model"]) for r in rows] == [("grx", None), ("grx", "adaptive")]
    raw, fe = (r["auc"] for r in rows)
    assert fe > raw + 0.1, (raw, fe)  # the point of the demo: the neighbourhood finds what the pixel hides
