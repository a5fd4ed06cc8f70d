"""The iris example built into a real Lambda image, for the benchmarks that need one: bench_push.py
pushes it (and a retrained rebuild), bench_handler.py times cold init from its unpacked root file system
(`unpack_image`, `Rootfs`).

Not a benchmark itself (bench/run only runs bench_*.py). Builds on the debian base (mmdebstrap, no
registry) with a private mlpack cache under the caller's temp folder, never ~/.cache/mlpack; pip's own
wheel cache may be warm.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from common import ROOT

sys.path.insert(0, str(ROOT))
from handlers import contract
from packager import oci
from packager.config import spec as spec_mod
from packager.image import build as image_mod
from tests.support.images import copy_example

BASE = "debian"
# examples/iris/train.py builds LogisticRegression(max_iter=1000, random_state=0); a retrain puts
# another C (regularisation strength) in front of max_iter, or replaces the one an earlier retrain put.
TRAIN_CALL = re.compile(r"LogisticRegression\((?:C=[^,]*, )?max_iter=1000")


@contextlib.contextmanager
def private_cache(folder: Path) -> Iterator[Path]:
    """MLPACK_CACHE_DIR set to `folder` for the duration (restored after)."""
    saved = os.environ.get("MLPACK_CACHE_DIR")
    os.environ["MLPACK_CACHE_DIR"] = str(folder)
    try:
        yield folder
    finally:
        if saved is None:
            os.environ.pop("MLPACK_CACHE_DIR", None)
        else:
            os.environ["MLPACK_CACHE_DIR"] = saved


def build(project: Path, base: str = BASE) -> image_mod.BuildResult:
    """`mlpack build` of the project, in-process; the layout lands in project/build/<name>/image."""
    spec = spec_mod.resolve(spec_mod.load(project), {"runtime.base": base})
    return image_mod.build(spec)


def build_iris(work: Path, base: str = BASE) -> tuple[Path, image_mod.BuildResult]:
    """A trained copy of examples/iris under `work` (the repository's example is never written to),
    built. Call it inside private_cache()."""
    project = copy_example("iris", work)
    return project, build(project, base)


def retrain(project: Path, c: float) -> None:
    """A model-only change, made as a user makes it: another C in the copied project's train.py, then
    `python train.py` (model.joblib is rewritten; samples.csv comes out the same)."""
    train = project / "train.py"
    text, n = TRAIN_CALL.subn(f"LogisticRegression(C={c!r}, max_iter=1000", train.read_text())
    if n != 1:
        raise RuntimeError(f"{train}: found {n} LogisticRegression(... max_iter=1000 calls, expected 1; "
                           "examples/iris/train.py changed")
    train.write_text(text)
    subprocess.run([sys.executable, "train.py"], cwd=project, check=True, capture_output=True, timeout=600)


# ---------------------------------------------------------------------------------------------------
# the image's own root file system, for cold-init timings

# Put first in every program run from the root file system: Lambda's runtime starts with the config's
# PYTHONPATH (and the task root) on sys.path; `-I` ignores PYTHONPATH, so it is set here.
PRELUDE = "import sys\nsys.path[:0] = {paths!r}\n"
# Appended once (untimed) to each program: every module it loaded must come from the root file system.
ISOLATED = """
import sys
_outside = sorted(n for n, m in list(sys.modules.items())
                  if getattr(m, "__file__", None) and not m.__file__.startswith({root!r}))
assert not _outside, "loaded from outside the image: " + ", ".join(_outside)
"""


@dataclass(frozen=True)
class Rootfs:
    """An image unpacked into a folder, set up to run Python the way the image would: the image's own
    interpreter (its Entrypoint), standard library and packages; the config's Env only (nothing from
    this process's environment), its paths moved under the folder; the config's WorkingDir as cwd.

    What is not the image's: the kernel, the dynamic loader and the C libraries the interpreter and the
    extension modules link against (no chroot: that needs privileges and /proc, /dev mounted inside),
    and the folder's path in front of /var/task."""

    root: Path
    python: Path
    env: dict[str, str]
    cwd: Path
    paths: tuple[str, ...]  # the config's PYTHONPATH, then LAMBDA_TASK_ROOT, under root
    model_dir: Path
    stdlib_pyc: int  # bytecode files in the interpreter's standard library (0: compiled at every start)
    # chroot=True: run under `unshare -r -m -p -f` chrooted into root (as `mlpack invoke --isolate` and the
    # build's in-image compiler do): the image's own dynamic loader and C libraries, its paths as they are
    image: tuple[str, tuple[str, ...], str, str] = ("", (), "", "")  # python, paths, cwd, model dir in the image
    chroot: bool = False
    image_env: dict[str, str] = dataclasses.field(default_factory=dict)  # the config's Env as it is

    def command(self, code: str) -> list[str]:
        # -I: no user site, no PYTHON* variables, no script folder on sys.path; -B: nothing written,
        # as on Lambda's read-only file system (only what the image ships is used)
        if not self.chroot:
            return [str(self.python), "-I", "-B", "-c", PRELUDE.format(paths=list(self.paths)) + code]
        python, paths, cwd, model_dir = self.image
        code = code.replace(str(self.model_dir), model_dir)
        script = ('r="$1"; w="$2"; shift 2; mount --rbind /dev "$r/dev" && mount -t proc proc "$r/proc" '
                  '&& exec /usr/bin/unshare --root="$r" --wd="$w" "$@"')
        return ["/usr/bin/unshare", "-r", "-m", "-p", "-f", "--kill-child", "/bin/sh", "-c", script, "sh",
                str(self.root), cwd, python, "-I", "-B", "-c", PRELUDE.format(paths=list(paths)) + code]

    def chrooted(self) -> Rootfs:
        """The same tree, run chrooted (see `chroot`)."""
        for d in ("dev", "proc", "tmp"):
            (self.root / d).mkdir(exist_ok=True)
        return dataclasses.replace(self, chroot=True, env={**self.image_env, "PYTHONPATH": ":".join(self.image[1])})

    def run(self, code: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(code), env=self.env, cwd=self.cwd, capture_output=True, text=True)

    def process_ms(self, code: str) -> float:
        """Wall time of a fresh process running `code` from the root file system, in ms."""
        t = time.perf_counter()
        subprocess.run(self.command(code), env=self.env, cwd=self.cwd, check=True, stdout=subprocess.DEVNULL)
        return (time.perf_counter() - t) * 1000

    def check_isolated(self, code: str) -> None:
        """Run `code` once and fail unless it worked with modules from the root file system only."""
        proc = self.run(code + ISOLATED.format(root="/" if self.chroot else str(self.root) + "/"))
        if proc.returncode != 0:
            raise RuntimeError(f"from the image's root file system: {proc.stderr.strip()[-600:]}")


def unpack_image(result: image_mod.BuildResult, dest: Path) -> Rootfs:
    """Unpack a built image under `dest` (layers applied in order) and read its config."""
    root = oci.unpack(result.image, dest)
    cfg = result.image.config_json.get("config") or {}
    env = dict(str(item).partition("=")[::2] for item in cfg.get("Env") or [])

    def inside(path: str) -> Path:
        return oci.resolve_inside(root, path, follow_last=True)

    image_env = dict(env)
    image_task_root = env.get("LAMBDA_TASK_ROOT", contract.TASK_ROOT)
    image_paths = tuple(dict.fromkeys([*(p for p in env.get("PYTHONPATH", "").split(":") if p), image_task_root]))
    task_root = str(inside(image_task_root))
    paths = tuple(dict.fromkeys([*(str(inside(p)) for p in env.get("PYTHONPATH", "").split(":") if p), task_root]))
    model_dir = inside(env.get(contract.ENV_MODEL_DIR, contract.MODEL_DIR))
    env.update({"LAMBDA_TASK_ROOT": task_root, "PYTHONPATH": ":".join(paths), contract.ENV_MODEL_DIR: str(model_dir)})
    entry = (cfg.get("Entrypoint") or [""])[0]
    if not Path(entry).name.startswith("python"):  # AWS's base (and its stand-in): a script starts python
        entry = f"/var/lang/bin/python{result.report['python']}"
        if not inside(entry).exists():
            raise RuntimeError(f"the image's Entrypoint is not a Python interpreter and it has no {entry}")
    python = inside(entry)
    stdlib = subprocess.run([str(python), "-I", "-B", "-c", "import sysconfig; print(sysconfig.get_paths()['stdlib'])"],
                            env=env, capture_output=True, text=True)
    if stdlib.returncode != 0:
        raise RuntimeError(f"the image's {entry} does not start on this host: {stdlib.stderr.strip()[-300:]}")
    stdlib_dir = Path(stdlib.stdout.strip())
    if not stdlib_dir.is_relative_to(root):
        raise RuntimeError(f"the image's {entry} found its standard library outside the image: {stdlib_dir}")
    return Rootfs(root=root, python=python, env=env, cwd=inside(cfg.get("WorkingDir") or image_task_root),
                  paths=paths, model_dir=model_dir, stdlib_pyc=sum(1 for _ in stdlib_dir.rglob("*.pyc")),
                  image=(entry, image_paths, cfg.get("WorkingDir") or image_task_root,
                         image_env.get(contract.ENV_MODEL_DIR, contract.MODEL_DIR)), image_env=image_env)
