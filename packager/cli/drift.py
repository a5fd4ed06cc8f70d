"""`mlpack drift TARGET --capture FILE` and `mlpack drift MODEL --env ENV`: per-feature drift of captured
requests against the model's training reference (handlers/drift.py's scores).

With --capture, TARGET is a model project (its build/<name>/model.json) or an export folder and FILE holds
capture lines (`mlpack serve --capture FILE` writes them; lines copied from the function's log group read
the same). Without it, MODEL is a locked model: its reference comes from the deploy record of the locked
image (packager/config/records.py) and the lines from its log group over --since (FilterLogEvents with
the capture pattern, through packager/aws.py, as `mlpack logs` reads).
Prints one row per feature and output: PSI, Jensen-Shannon distance, chi-squared p-value for
categoricals, the verdict; exits 1 when a feature drifted, so a script can gate on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from handlers import contract, drift, model_json
from packager.cli import echo_json
from packager.errors import MlpackError


def _model_json(target: Path) -> model_json.ModelJson:
    path = target / contract.MODEL_JSON
    if not path.is_file():
        from packager.config import spec as spec_mod

        if not (target / spec_mod.SPEC_FILE).is_file():
            raise MlpackError(f"{target}: neither a model project nor an export folder (no model.json)")
        path = spec_mod.resolve(spec_mod.load(target)).default_build_dir() / contract.MODEL_JSON
    try:
        return model_json.read(path)
    except OSError as e:
        raise MlpackError(f"{path}: cannot read model.json: {e.strerror}",
                          hint=f"export the model first: mlpack export {target}") from e
    except model_json.ModelJsonError as e:
        raise MlpackError(str(e)) from e


def scores(document: model_json.ModelJson, lines: list[str]) -> list[drift.FeatureDrift]:
    """The drift of the capture lines' columns against the document's reference."""
    if document.reference is None:
        raise MlpackError(f"{document.name}: model.json has no drift reference",
                          hint="export it again with this mlpack (mlpack export --force)")
    columns, _ = drift.read_capture(lines)
    return drift.report(model_json.plain(document.reference), columns)


CAPTURE_PATTERN = "{ $.mlpack_capture = 1 }"


def _from_aws(model: str, env: str | None, lock: Path | None, since: str) -> tuple[model_json.ModelJson, list[str]]:
    """The locked image's model.json (its deploy record) and the capture lines of MODEL's log group."""
    from handlers.names import ModelNames
    from packager.cli.status import _aws, _where
    from packager.config import lock as lock_mod
    from packager.config import records
    from packager.fleet import logs as logs_mod

    lock_path, environment = _where(env, lock)
    held = lock_mod.read_lock(lock_path)
    entry = held.models.get(model)
    if entry is None:
        raise MlpackError(f"{lock_path}: no model {model!r} is locked", hint="push it first: mlpack push")
    document = model_json.from_dict(records.read(lock_path, model, entry.digest), f"{model}'s deploy record")
    aws, region = _aws(environment, held if environment is None else None)
    group = ModelNames(model, environment.name if environment else None).log_group
    start_ms = int(logs_mod.since(since).timestamp() * 1000)
    return document, [e.message for e in aws.log_events(group, region, start_ms=start_ms, pattern=CAPTURE_PATTERN)]


@click.command("drift")
@click.argument("target")
@click.option("--capture", "capture", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A capture file (mlpack serve --capture FILE, or the function's log lines); TARGET is then a "
              "project or export folder.")
@click.option("--env", "env", metavar="ENV", help="Without --capture: the environment (default: the only one).")
@click.option("--lock", "lock", type=click.Path(dir_okay=False, path_type=Path), help="Lock file instead of --env's.")
@click.option("--since", "since", default="24h", show_default=True, metavar="DURATION|TIME",
              help="Without --capture: the window read from the log group (30m, 24h, 7d, or a time).")
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON.")
def drift_command(target: str, capture: Path | None, env: str | None, lock: Path | None, since: str,
                  as_json: bool) -> None:
    """Per-feature drift (PSI, Jensen-Shannon, chi-squared) of captured requests against TARGET's training
    reference; exit 1 when a feature drifted.

    \b
      mlpack serve models/iris --capture /tmp/iris.capture &
      mlpack drift models/iris --capture /tmp/iris.capture
      mlpack drift iris --env prod --since 7d
    """
    if capture is not None:
        document = _model_json(Path(target))
        lines, where = capture.read_text(encoding="utf-8").splitlines(), str(capture)
    else:
        document, lines = _from_aws(target, env, lock, since)
        where = f"{target}'s log group (last {since})"
    rows = scores(document, lines)
    if not rows:
        raise MlpackError(f"{where}: no capture lines of a feature the reference knows",
                          hint="serve with `mlpack serve TARGET --capture FILE` and send requests")
    if as_json:
        echo_json([r.as_dict() for r in rows])
    else:
        width = max(len(r.name) for r in rows)
        click.echo(f"{'feature':<{width}}  {'kind':<11}  {'rows':>6}  {'psi':>8}  {'js':>6}  {'chi2 p':>8}  status")
        for r in rows:
            p = "" if r.p_value is None else f"{r.p_value:.3g}"
            colour: dict[str, Any] = {"drift": {"fg": "red"}, "warn": {"fg": "yellow"}}.get(r.status, {})
            click.echo(f"{r.name:<{width}}  {r.kind:<11}  {r.rows:>6}  {r.psi:>8.4f}  {r.js:>6.3f}  {p:>8}  "
                       + click.style(r.status, **colour))
        click.echo(f"thresholds: PSI {drift.PSI_WARN} warns, {drift.PSI_DRIFT} drifts; Jensen-Shannon "
                   f"{drift.JS_DRIFT} drifts; fewer than {drift.MIN_ROWS} rows: few", err=True)
    if any(r.status == "drift" for r in rows):
        raise click.exceptions.Exit(1)


commands = [drift_command]
