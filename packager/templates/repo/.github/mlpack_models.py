"""What the workflows in .github/workflows/ build and where they deploy, read from mlpack-repo.toml.

    python .github/mlpack_models.py projects                      # every model project, as a JSON list
    python .github/mlpack_models.py projects --changed-since REV  # only those changed since REV
    python .github/mlpack_models.py projects --lines              # one a line, for shell loops
    python .github/mlpack_models.py env dev                       # account=, region=, lock= of an environment

`--changed-since` lists the projects with a file changed between REV and HEAD (git diff REV...HEAD), and
every project when a file that all models share changed (REBUILD_ALL), or when REV is not a commit
here (a first run). Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "mlpack-repo.toml"
SPEC_FILE = "mlpack.toml"
# A change to one of these rebuilds every model. Add the folders of code your models share.
REBUILD_ALL = ["mlpack-repo.toml", "requirements.txt", "package.json", "package-lock.json", ".github/*"]


def _config() -> dict:
    with CONFIG.open("rb") as f:
        return tomllib.load(f)


def all_projects() -> list[str]:
    found: set[str] = set()
    for pattern in _config().get("projects", ["models/*"]):
        for path in ROOT.glob(pattern):
            if (path / SPEC_FILE).is_file():
                found.add(path.relative_to(ROOT).as_posix())
    return sorted(found)


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)


def changed_projects(rev: str) -> list[str]:
    projects = all_projects()
    if _git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").returncode != 0:
        print(f"{rev}: not a commit here, so every project counts as changed", file=sys.stderr)
        return projects
    diff = _git("diff", "--name-only", f"{rev}...HEAD")
    if diff.returncode != 0:
        sys.exit(f"git diff {rev}...HEAD failed: {diff.stderr.strip()}")
    files = [line for line in diff.stdout.splitlines() if line]
    shared = [f for f in files if any(fnmatch.fnmatch(f, pattern) for pattern in REBUILD_ALL)]
    if shared:
        print(f"{shared[0]} changed, so every project counts as changed", file=sys.stderr)
        return projects
    return [p for p in projects if any(f.startswith(f"{p}/") for f in files)]


def environment(name: str) -> dict[str, str]:
    envs = _config().get("environments", {})
    if name not in envs:
        sys.exit(f"{CONFIG.name}: no [environments.{name}] (environments: {', '.join(envs) or 'none'})")
    env = envs[name]
    return {"account": env["account"], "region": env["region"], "lock": env.get("lock", f"mlpack.{name}.lock.json")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    projects = sub.add_parser("projects", help="model project folders, as a JSON list")
    projects.add_argument("--changed-since", metavar="REV", help="only those changed since REV")
    projects.add_argument("--lines", action="store_true", help="one a line instead of a JSON list")
    env = sub.add_parser("env", help="an environment's account, region and lock file, one name=value a line")
    env.add_argument("name")
    args = parser.parse_args()
    if args.command == "projects":
        found = changed_projects(args.changed_since) if args.changed_since else all_projects()
        print("\n".join(found) if args.lines else json.dumps(found))
    else:
        for key, value in environment(args.name).items():
            print(f"{key}={value}")


if __name__ == "__main__":
    main()
