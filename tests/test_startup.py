"""The CLI starts in a blink: ``fencli --help`` and the command modules import no heavy library.

Each check runs in a fresh interpreter, since this test process has long imported everything.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT

HEAVY = ("numpy", "scipy", "scipy.stats", "scipy.linalg", "torch", "matplotlib", "rasterio", "dask",
         "onnx", "onnxruntime", "h5py", "typer.rich_utils", "rich.console")

PROBE = """
import json, sys
from fencli import cli
cli._register(["--help"])  # every command module, as `fencli --help` loads them
sys.argv = ["fencli", "--help"]
try:
    cli.app()
except SystemExit:
    pass
print(json.dumps(sorted(m for m in sys.modules if m in set(json.loads(sys.argv_heavy)))), file=sys.stderr)
"""


def test_cli_help_imports_no_heavy_module():
    code = f"import sys; sys.argv_heavy = {json.dumps(json.dumps(HEAVY))}\n" + PROBE
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Usage: fencli" in proc.stdout and "detect" in proc.stdout
    assert json.loads(proc.stderr.strip().splitlines()[-1]) == []


def test_help_examples_keep_their_lines():
    """Click's plain help rewraps paragraphs; the examples are marked to keep one command a line."""
    proc = subprocess.run([sys.executable, "-m", "fencli", "detect", "--help"], capture_output=True,
                          text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
                                                     "COLUMNS": "200"}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "\n    fencli detect scene.mat\n    fencli detect scene.mat --model none --method slrx" in proc.stdout


PARSE = """
import sys
from fencli import cli
sys.argv = ["fencli", "detect", "missing.mat", "--model", "none", "--method", "grx", "--tile", "64"]
try:
    cli.main()
except SystemExit as exc:
    print(exc.code, "pydantic" in sys.modules, file=sys.stderr)
"""


def test_parsing_a_command_imports_no_pydantic():
    """typer 0.29 coerces every parameter through pydantic (+0.15 s a run); pyproject keeps it below."""
    proc = subprocess.run([sys.executable, "-c", PARSE], capture_output=True, text=True, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert proc.stderr.strip().splitlines()[-1] == "2 False", proc.stderr


RUN_GRX = """
import sys
import numpy as np
import scipy.io as sio
from fencli.synthetic import planted_scene
cube, gt = planted_scene(h=24, w=26, bands=60, n_anomalies=4, seed=3)
sio.savemat("s.mat", {"data": cube, "map": gt})
del sio
for name in [m for m in sys.modules if m.split(".")[0] in ("scipy", "concurrent")]:
    del sys.modules[name]  # the scene is written; from here on, what a user's run imports
from fencli import cli
sys.argv = ["fencli", "detect", "s.mat", "--method", "grx", "--json", "--out", "o.npy"] + sys.argv[1:]
try:
    cli.main()
finally:
    print(sorted(m for m in sys.modules if m.split(".")[0] in ("scipy", "concurrent")), file=sys.stderr)
"""


@pytest.mark.parametrize("model", ["fencli-50", "adaptive", "none"])
def test_grx_on_a_mat_scene_imports_no_scipy(model, tmp_path):
    """scipy.io and scipy.linalg cost 0.3 s of a 0.45 s FE+GRX run, concurrent.futures (SLRX's and
    LRX's threads) 8 ms; the GRX path needs none of them."""
    proc = subprocess.run([sys.executable, "-c", RUN_GRX, "--model", model], capture_output=True, text=True,
                          cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=120)
    from conftest import pair_auc, rx_reference
    from fencli.synthetic import planted_scene

    cube, gt = planted_scene(h=24, w=26, bands=60, n_anomalies=4, seed=3)  # the script's scene
    scores = np.load(tmp_path / "o.npy")  # the run's map, its AUC by pairs (raw: the textbook RX's)
    assert json.loads(proc.stdout)["auc"] == pytest.approx(pair_auc(scores, gt), abs=1e-12), proc.stderr
    if model == "none":
        np.testing.assert_allclose(scores, rx_reference(cube), rtol=1e-6)
    assert proc.stderr.strip().splitlines()[-1] == "[]", proc.stderr
