"""The CLI starts in a blink: ``fencli --help`` and the command modules import no heavy library.

Each check runs in a fresh interpreter, since this test process has long imported everything.
"""

import json
import subprocess
import sys

from conftest import ROOT

HEAVY = ("numpy", "scipy", "scipy.stats", "scipy.linalg", "torch", "matplotlib", "rasterio", "dask",
         "onnx", "onnxruntime", "h5py", "typer.rich_utils", "rich.console")

PROBE = """
import json, sys
from fencli import cli
cli._register()  # every command module, as `fencli ANY` loads them
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
