"""This repository's CDK app, for its examples: `cdk synth` / `cdk deploy mlpack-<model>` from the
repository root (cdk.json: "mlpack:projects" = examples/*, "mlpack:lock" = mlpack.lock.json). The app
itself is mlpack's, in the installed package: stacks/app.py (a team repository's cdk.json runs
`python -m stacks.app`). No AWS calls, no Docker.
"""

from pathlib import Path

from stacks.app import main

if __name__ == "__main__":
    main(default_root=Path(__file__).resolve().parent)
