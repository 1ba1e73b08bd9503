"""Faults while writing: a killed run, two runs on one output, a full disk, a killed batch.

Every output goes through :func:`fencli.output.atomic_path`; these tests kill or starve real processes
and check what is left under the final name.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from fencli.errors import FencliError
from fencli.output import atomic_path, remove_stale_temps, write_array

ROOT = Path(__file__).resolve().parents[1]

WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from fencli.errors import FencliError
    from fencli.output import atomic_path
    target, payload, force, go = sys.argv[1], sys.argv[2], sys.argv[3] == "1", Path(sys.argv[4])
    try:
        with atomic_path(target, force=force) as tmp:
            tmp.write_text(payload[: len(payload) // 2])
            print("half", flush=True)
            while not go.exists():
                time.sleep(0.01)
            with open(tmp, "a") as f:
                f.write(payload[len(payload) // 2:])
    except FencliError as err:
        print(err, file=sys.stderr)
        sys.exit(2)
""")


def _writer(target: Path, payload: str, force: bool, go: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(target), payload, "1" if force else "0", str(go)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _temps(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.tmp*"))


def test_killed_mid_write_leaves_only_a_temp_that_the_next_run_removes(tmp_path):
    target = tmp_path / "scores.npy"
    proc = _writer(target, "x" * 4000, False, tmp_path / "never")
    assert proc.stdout.readline().strip() == "half"  # half the payload is on disk
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert not target.exists()
    left = _temps(tmp_path)
    assert len(left) == 1 and left[0].stat().st_size == 2000
    write_array(target, np.arange(3.0))  # the next run to the same output cleans up
    assert _temps(tmp_path) == []
    np.testing.assert_array_equal(np.load(target), np.arange(3.0))


def test_a_live_writers_temp_is_not_removed(tmp_path):
    target = tmp_path / "a.npy"
    mine = tmp_path / f".a.npy.{os.getpid()}.xyz.tmp.npy"
    dead = tmp_path / ".a.npy.4194305.xyz.tmp.npy"  # above Linux's pid_max: never a live process
    other = tmp_path / ".b.npy.4194305.xyz.tmp.npy"
    for f in (mine, dead, other):
        f.write_text("partial")
    assert remove_stale_temps(target) == [dead]
    assert mine.exists() and other.exists() and not dead.exists()


@pytest.mark.parametrize("force", [False, True])
def test_two_runs_on_one_output_never_mix(tmp_path, force):
    target = tmp_path / "out.txt"
    go = tmp_path / "go"
    a, b = "A" * 3000, "B" * 3000
    procs = [_writer(target, a, force, go), _writer(target, b, force, go)]
    for p in procs:  # both passed the "already exists" check before either publishes
        assert p.stdout.readline().strip() == "half"
    go.touch()
    results = [(p.wait(30), p.stderr.read()) for p in procs]
    assert target.read_text() in (a, b)
    assert _temps(tmp_path) == []
    codes = sorted(rc for rc, _ in results)
    if force:
        assert codes == [0, 0]  # a clean overwrite: the later rename wins, whole
    else:
        assert codes == [0, 2]
        err = next(e for rc, e in results if rc == 2)
        assert "already exists" in err and err.count("\n") == 1 and "Traceback" not in err


def test_full_disk_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "big.npy"

    def full_disk(file, arr, allow_pickle=False):
        file.write(b"\x93NUMPY partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "save", full_disk)
    with pytest.raises(FencliError, match=r"cannot write .*big\.npy: No space left on device"):
        write_array(target, np.zeros((4, 4)))
    assert list(tmp_path.iterdir()) == []


def test_full_disk_through_the_cli(tmp_path):
    scene = tmp_path / "scene.npy"
    np.save(scene, np.random.default_rng(0).random((12, 12, 6), dtype=np.float32))
    out = tmp_path / "scores.npy"
    code = textwrap.dedent("""
        import errno, os, sys
        import numpy as np
        def full(file, arr, allow_pickle=False):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        np.save = full
        from fencli.cli import main
        sys.argv = ["fencli"] + sys.argv[1:]
        main()
    """)
    res = subprocess.run([sys.executable, "-c", code, "detect", str(scene), "--model", "none",
                          "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert "No space left on device" in res.stderr and "Traceback" not in res.stderr
    assert res.stderr.strip().count("\n") == 0
    assert not out.exists() and _temps(tmp_path) == []


def test_with_an_existing_output_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("old")
    with pytest.raises(FencliError, match="cannot write"):
        with atomic_path(target, force=True) as tmp:
            tmp.write_text("new, half")
            raise OSError(errno.EIO, os.strerror(errno.EIO))
    assert target.read_text() == "old" and _temps(tmp_path) == []


def test_a_killed_batch_resumes_without_redoing_or_trusting_partial_work(tmp_path):
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        np.save(scenes / f"s{i}.npy", rng.random((40, 40, 8), dtype=np.float32))
    out = tmp_path / "out"
    out.mkdir()
    cmd = [sys.executable, "-m", "fencli", "detect", str(scenes), "--model", "none", "--method", "grx",
           "--out-dir", str(out)]
    # a run killed after its first scene, while a later scene is mid-write (its temp file, a dead pid)
    first = subprocess.run([*cmd[:4], str(scenes / "s0.npy"), *cmd[5:]], cwd=ROOT, capture_output=True,
                           text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    done = out / "s0.grx.npy"
    assert done.exists()
    stamp = done.stat().st_mtime_ns
    half = out / ".s1.grx.npy.4194305.abc.tmp.npy"
    half.write_bytes(b"\x93NUMPY half")
    res = subprocess.run([*cmd, "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    rows = {r["scene"]: r for r in json.loads(res.stdout)["scenes"]}
    assert rows["s0"]["status"] == "skipped" and done.stat().st_mtime_ns == stamp
    assert rows["s1"]["status"] == rows["s2"]["status"] == "ok"
    assert np.load(out / "s1.grx.npy").shape == (40, 40)
    assert not half.exists() and _temps(out) == []


def test_kill_a_real_cli_run_mid_write(tmp_path):
    """SIGKILL a real `fencli detect` while its output is being written: nothing under the final name."""
    scene = tmp_path / "scene.npy"
    np.save(scene, np.random.default_rng(2).random((30, 30, 5), dtype=np.float32))
    out = tmp_path / "scores.npy"
    code = textwrap.dedent("""
        import sys, time
        import numpy as np
        real = np.save
        def slow(file, arr, allow_pickle=False):
            file.write(b"\\x93NUMPY")
            file.flush()
            print("writing", flush=True)
            time.sleep(60)
        np.save = slow
        from fencli.cli import main
        sys.argv = ["fencli"] + sys.argv[1:]
        main()
    """)
    proc = subprocess.Popen([sys.executable, "-c", code, "detect", str(scene), "--model", "none",
                             "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while "writing" not in (line := proc.stdout.readline()):
        assert line and time.monotonic() < deadline, "the run never reached its write"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert not out.exists() and len(_temps(tmp_path)) == 1
