"""The CDK app: `cdk synth` / `cdk deploy mlpack-<model>` from the repository root (see cdk.json).

Reads mlpack.lock.json (context "mlpack:lock") and every model project matched by the globs in
context "mlpack:projects", then creates one stack per pushed model (mlpack-<model>) and one shared
stack (mlpack-shared). A project not pushed yet is skipped with a note on stderr; a lock entry
without its project, or a pushed model without its exported model.json, stops synth with a
message saying what to run. No AWS calls, no Docker.

Other context keys: "mlpack:account_concurrency" (default 1000; the concurrency alarm's limit for
functions without reserved concurrency), "mlpack:bootstrapless" (true: no bootstrap stack needed;
used by the deploy smoke test; only works while no stack has file assets, i.e. no chat notifier).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import aws_cdk as cdk

from packager.errors import MlpackError
from stacks.assembly import add_stacks
from stacks.plan import plan

ROOT = Path(__file__).resolve().parent


def _list(value: object) -> list[str]:
    if isinstance(value, str):  # -c on the command line gives a string, maybe JSON
        return [str(v) for v in json.loads(value)] if value.startswith("[") else [value]
    return [str(v) for v in value] if isinstance(value, list) else ["examples/*"]


def main() -> None:
    app = cdk.App()
    ctx = app.node.try_get_context
    try:
        the_plan = plan(
            Path(os.getcwd()) if (Path.cwd() / "cdk.json").is_file() else ROOT,
            patterns=_list(ctx("mlpack:projects") or ["examples/*"]),
            lock_path=Path(str(ctx("mlpack:lock") or "mlpack.lock.json")),
        )
    except MlpackError as e:
        print(f"mlpack: {e}", file=sys.stderr)
        sys.exit(2)
    for note in the_plan.notes:
        print(note, file=sys.stderr)
    if not the_plan.models:
        print("mlpack: no pushed model to deploy (run `mlpack push PROJECT` first)", file=sys.stderr)
    bootstrapless = str(ctx("mlpack:bootstrapless") or "").lower() in ("1", "true", "yes")
    add_stacks(
        app,
        the_plan,
        account_concurrency=int(ctx("mlpack:account_concurrency") or 1000),
        synthesizer=cdk.BootstraplessSynthesizer if bootstrapless else None,
    )
    app.synth()


if __name__ == "__main__":
    main()
