"""Model projects for the export tests: an mlpack.toml naming a source and samples, nothing else."""

from __future__ import annotations

import textwrap
from pathlib import Path


def make_project(root: Path, *, source: str, samples: str, extra: str = "", name: str = "m") -> Path:
    """root (created if missing) with an mlpack.toml; `extra` goes into its [model] section."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "mlpack.toml").write_text(textwrap.dedent(f"""
        [model]
        name = "{name}"
        owners = ["ana@example.com"]
        source = "{source}"
        {extra}

        [samples]
        source = "{samples}"
    """))
    return root
