"""Temporary folders of killed processes: a build killed with SIGKILL leaves its folder (nothing of it runs
any more), and the next build removes it; a folder whose process still runs, or that is not named like
ours, is kept. `mlpack serve`/`invoke` turn SIGTERM and SIGHUP into SystemExit so their own clean-up runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from packager.image import deps
from packager.local import prepare as prepare_mod

REPO_ROOT = Path(__file__).resolve().parents[2]

# What a build does with its work folder: make it (named by its pid, by the build's own helper), fill it,
# then work for a long time.
BUILDER = """
import sys, time
from pathlib import Path
from packager.image.deps import pid_tempdir
work = pid_tempdir(Path(sys.argv[1]), sys.argv[2])
(work / "site").mkdir()
(work / "site" / "wheel.bin").write_bytes(b"x" * 100_000)
print(work, flush=True)
time.sleep(600)
"""


class Builder:
    """A process that made a work folder like a build and is busy; `kill9()` ends it the hard way."""

    def __init__(self, parent: Path, prefix: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", BUILDER, str(parent), prefix], cwd=REPO_ROOT,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.folder = Path(self.proc.stdout.readline().strip())
        assert self.folder.is_dir() and self.folder.parent == parent

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()  # reaped: no zombie holds the pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.kill9()


@pytest.mark.parametrize("prefix", ["deps-", ".image.tmp-", prepare_mod.RUN_PREFIX])
def test_a_killed_builds_folder_is_removed_and_a_live_ones_kept(tmp_path, prefix):
    killed, live = Builder(tmp_path, prefix), Builder(tmp_path, prefix)
    try:
        killed.kill9()
        assert killed.folder.is_dir()  # SIGKILL: nothing of the process ran to remove it
        # not ours, whatever they look like: no pid in the name, a file, a link to a killed build's folder
        others = [tmp_path / f"{prefix}abc123", tmp_path / f"{prefix[:-1]}{killed.proc.pid}"]
        for p in others:
            p.mkdir()
        (tmp_path / f"{prefix}{killed.proc.pid}-file").write_text("a file")
        link = tmp_path / f"{prefix}{killed.proc.pid}-link"
        target = tmp_path / "elsewhere"
        target.mkdir()
        link.symlink_to(target)

        removed = deps.remove_stale(tmp_path, prefix)

        assert removed == [killed.folder]
        assert not killed.folder.exists()
        assert live.folder.is_dir() and (live.folder / "site" / "wheel.bin").is_file()
        assert all(p.exists() for p in [*others, tmp_path / f"{prefix}{killed.proc.pid}-file", link, target])
    finally:
        killed.stop()
        live.stop()
    deps.remove_stale(tmp_path, prefix)
    assert not live.folder.exists()  # once its process is gone, it goes too


def test_this_process_and_unsure_pids_count_as_alive():
    assert deps.process_alive(os.getpid())
    assert deps.process_alive(0) and deps.process_alive(-1)  # process groups, never signalled
    assert deps.process_alive(1)  # init: not ours to signal (PermissionError), alive
    assert deps.process_alive(2**40)  # out of range: unsure, kept


def test_the_build_and_run_folders_carry_the_pid(tmp_path):
    work = deps.pid_tempdir(tmp_path / "new", "deps-")
    assert work.name.startswith(f"deps-{os.getpid()}-") and work.is_dir()
    assert deps.remove_stale(tmp_path / "new", "deps-") == []  # ours, and we run


def task_root(tmp_path: Path) -> Path:
    root = tmp_path / "task"
    (root / "handlers").mkdir(parents=True)
    (root / "handlers" / "__init__.py").write_text("")
    (root / "model").mkdir()
    return root


def test_a_run_removes_the_run_folders_of_killed_runs_and_its_own(tmp_path, monkeypatch):
    runs = tmp_path / "tmp"
    runs.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(runs))
    killed = Builder(runs, prepare_mod.RUN_PREFIX)
    killed.kill9()
    os.chmod(killed.folder / "site", 0o500)  # an unpacked image's read-only folder
    with prepare_mod.prepare(task_root(tmp_path), isolate=False, memory_mb=None, timeout_s=None):
        [mine] = list(runs.iterdir())
        assert mine.name.startswith(f"{prepare_mod.RUN_PREFIX}{os.getpid()}-")
    assert list(runs.iterdir()) == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_stop_signals_raise_system_exit_inside_and_are_restored_after(signum):
    before = signal.getsignal(signum)
    cleaned = []
    with pytest.raises(SystemExit) as e, prepare_mod.exit_on_stop_signals():
        try:
            os.kill(os.getpid(), signum)  # the handler runs as soon as this call returns
            pytest.fail("the signal did not stop the block")
        finally:
            cleaned.append(True)
    assert e.value.code == 128 + signum
    assert cleaned == [True]
    assert signal.getsignal(signum) == before
