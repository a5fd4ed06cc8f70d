"""`mlpack batch`: score files with the model's own image, in AWS (its batch state machine, [batch] in
mlpack.toml) or on this machine (--local).

In AWS: MODEL --env ENV --input s3://BUCKET/PREFIX --output s3://BUCKET/PREFIX: one execution of
mlpack-[<env>-]<model>-batch per .csv / .jsonl object under the input prefix (through packager/aws.py),
where their results will be, and with --wait the rows done, failed and an ETA until they end. Locally:
TARGET --local FILE -o OUT: the same batches through the image (isolated when this machine can, else its
task root under this Python; packager/local/prepare.py), with a progress bar, into a CSV or JSON Lines
file of key columns and outputs (packager/local/batch.py).
"""

from __future__ import annotations

import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from handlers.names import ModelNames
from packager.errors import MlpackError

S3_RE = re.compile(r"^s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/?(.*)$")


def _log(s: str) -> None:
    click.echo(s, err=True)


class _Progress:
    """One line on stderr, rewritten: rows done of all, rows a second, ETA."""

    def __init__(self, what: str) -> None:
        self.what, self.t0, self.last = what, time.monotonic(), 0.0
        self.tty = sys.stderr.isatty()

    def __call__(self, done: int, total: int, extra: str = "") -> None:
        now = time.monotonic()
        if done < total and now - self.last < 0.5 and done:
            return
        self.last = now
        elapsed = max(now - self.t0, 1e-6)
        rate = done / elapsed
        eta = f"ETA {(total - done) / rate:,.0f} s" if 0 < done < total and rate else ""
        width = 30
        bar = "#" * int(width * done / total) if total else ""
        line = (f"{self.what} [{bar:<{width}}] {done:,}/{total:,} rows ({100 * done / max(total, 1):.0f}%) "
                f"{rate:,.0f} rows/s {eta} {extra}").rstrip()
        click.echo(("\r" + line) if self.tty else line, err=True, nl=not self.tty or done >= total)


def _s3(url: str, option: str) -> tuple[str, str]:
    m = S3_RE.match(url)
    if not m:
        raise MlpackError(f"{option} {url}: not an S3 location", hint="write it s3://BUCKET/PREFIX/")
    return m.group(1), m.group(2)


@click.command()
@click.argument("target")
@click.option("--env", "env", help="The environment (mlpack-repo.toml) whose state machine runs the batch.")
@click.option("--lock", type=click.Path(dir_okay=False, path_type=Path), help="The lock naming the model's image "
              "(default: the environment's, else mlpack.lock.json); its registry gives the region without --env.")
@click.option("--input", "input_url", help="s3://BUCKET/PREFIX/ (every .csv and .jsonl object under it) or "
              "s3://BUCKET/KEY; within [batch] input_bucket/input_prefix.")
@click.option("--output", "output_url", help="s3://BUCKET/PREFIX/ for the results; within [batch] output_bucket/"
              "output_prefix.")
@click.option("--wait", is_flag=True, help="Follow the executions until they end: rows done, failed, ETA.")
@click.option("--poll", "poll_s", type=click.FloatRange(0.1, 300), default=10.0, show_default=True,
              help="Seconds between progress reads with --wait.")
@click.option("--local", "local_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Score this CSV or JSON Lines file on this machine instead; TARGET is then a model project or "
              "an image layout (or export folder, task root).")
@click.option("-o", "--out", "out_file", type=click.Path(dir_okay=False, path_type=Path),
              help="With --local: the output file (.csv or .jsonl).")
@click.option("--isolate/--task-root", "isolate", default=None, help="With --local: run the whole image isolated "
              "(default when this machine can), or its handler and model under this Python.")
@click.option("--rows", "rows", type=click.IntRange(1, 100000), help="With --local: rows per invocation (default: "
              "[batch] rows_per_invocation, else 1000).")
@click.option("--key", "keys", multiple=True, help="With --local: a key column to copy to the output (default: "
              "[batch] key_columns).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="With --local: functions running side by side.")
def batch(target: str, env: str | None, lock: Path | None, input_url: str | None, output_url: str | None, wait: bool,
          poll_s: float, local_file: Path | None, out_file: Path | None, isolate: bool | None, rows: int | None,
          keys: tuple[str, ...], workers: int) -> None:
    """Score files with the model's image: in AWS through its batch state machine, or --local.

    \b
      mlpack batch churn --env prod --input s3://scoring-in/churn/2026-12/ --output s3://scoring-out/churn/ --wait
      mlpack batch models/churn --local customers.csv -o scored.csv
    """
    if local_file is not None:
        if out_file is None:
            raise MlpackError("--local needs -o/--out FILE (.csv or .jsonl)")
        _local(Path(target), local_file, out_file, isolate=isolate, rows=rows, keys=list(keys), workers=workers)
        return
    if input_url is None or output_url is None:
        raise MlpackError("mlpack batch MODEL needs --input s3://... and --output s3://... (or --local FILE -o OUT)")
    _in_aws(target, env, lock, input_url, output_url, wait=wait, poll_s=poll_s)


# --- locally ------------------------------------------------------------------------------------------


def _local(target: Path, source: Path, out: Path, *, isolate: bool | None, rows: int | None, keys: list[str],
           workers: int) -> None:
    from packager import oci
    from packager.local import batch as batch_mod
    from packager.local import function as local
    from packager.local.prepare import prepare

    if not target.is_dir():
        raise MlpackError(f"{target}: with --local, TARGET is a model project or an image layout folder")
    spec = None
    if (target / "mlpack.toml").is_file():
        from packager.config import spec as spec_mod

        spec = spec_mod.resolve(spec_mod.load(target))
    arch = spec.runtime.arch if spec else (oci.read_layout(target).arch if (target / "oci-layout").is_file() else None)
    if isolate is None:
        problem = local.isolation_problem(arch) if arch else "not an image"
        isolate = problem is None
        if problem:
            _log(f"note: running the task root under this Python, not the image isolated ({problem})")
    rows = rows or (spec.batch.rows_per_invocation if spec else 1000)
    keys = keys or (list(spec.batch.key_columns) if spec else [])
    with prepare(target, isolate=isolate, memory_mb=None, timeout_s=None, log=_log) as prep:
        if prep.note:
            _log(f"note: {prep.note}")
        fns = [local.LocalFunction(prep.command, timeout_s=prep.timeout_s, output=lambda s: None, name=prep.name)
               for _ in range(workers)]
        try:
            for fn in fns:
                fn.start()
            _log(f"scoring {source} with {prep.name} ({prep.command.description}), {rows} rows an invocation")
            run = batch_mod.score_file(fns, source, out, rows_per_invocation=rows, key_columns=keys,
                                       progress=_Progress("scoring"))
        finally:
            for fn in fns:
                fn.stop()
    click.echo(f"{out}: {run.rows:,} rows, {run.row_errors:,} answered with an error (column `error`), "
               f"{run.invocations} invocations")
    for failure in run.failed_invocations:
        click.secho(f"  failed invocation: {failure}", fg="red", err=True)
    if run.failed_invocations:
        raise click.exceptions.Exit(1)


# --- in AWS -------------------------------------------------------------------------------------------


def _partition(region: str) -> str:
    return "aws-cn" if region.startswith("cn-") else "aws-us-gov" if region.startswith("us-gov-") else "aws"


def _where(model: str, env: str | None, lock: Path | None) -> tuple[str, str | None, str | None]:
    """(region, account or None to ask STS, environment name)."""
    from packager import aws as aws_mod
    from packager.cli.release import _lock_of
    from packager.config import lock as lock_mod

    lock_path, environment = _lock_of(env, lock)
    if environment is not None:
        return environment.region, environment.account, environment.name
    entry = lock_mod.read_lock(lock_path).models.get(model)
    ecr = aws_mod.parse_ecr_host(entry.repository.partition("/")[0]) if entry else None
    if ecr is not None:
        return ecr.region, ecr.account, None
    region = aws_mod.Aws().region
    if not region:
        raise MlpackError(f"{model}: cannot tell the region of its state machine",
                          hint="run it in a team repository with --env, or set AWS_REGION")
    return region, None, None


def _in_aws(model: str, env: str | None, lock: Path | None, input_url: str, output_url: str, *, wait: bool,
            poll_s: float) -> None:
    from packager import aws as aws_mod
    from packager.local.batch import FORMATS

    in_bucket, in_prefix = _s3(input_url, "--input")
    out_bucket, out_prefix = _s3(output_url, "--output")
    region, account, env_name = _where(model, env, lock)
    aws = aws_mod.Aws(region=region)
    account = account or aws.account_id()
    machine = ModelNames(model, env_name).state_machine
    arn = f"arn:{_partition(region)}:states:{region}:{account}:stateMachine:{machine}"
    definition = aws.state_machine_definition(arn, region)
    states = definition.get("States") or {}
    want_in = ((states.get("ScoreCsv") or {}).get("ItemReader") or {}).get("Parameters", {}).get("Bucket")
    want_out = ((states.get("ScoreCsv") or {}).get("ResultWriter") or {}).get("Parameters", {}).get("Bucket")
    for option, got, want in (("--input", in_bucket, want_in), ("--output", out_bucket, want_out)):
        if want and got != want:
            raise MlpackError(f"{option}: {machine} reads and writes only s3://{want_in}/ and s3://{want_out}/ "
                              f"(got s3://{got}/)", hint="set [batch] input_bucket/output_bucket and deploy, or use "
                              "those buckets")
    objects = aws.list_keys(in_bucket, in_prefix, region)
    exact = [(k, n) for k, n in objects if k == in_prefix]
    chosen = exact or [(k, n) for k, n in objects if Path(k).suffix.lower() in FORMATS]
    if not chosen:
        raise MlpackError(f"--input {input_url}: no .csv or .jsonl object there")
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    if out_prefix and not out_prefix.endswith("/"):
        out_prefix += "/"
    started: list[tuple[str, str, str]] = []
    for i, (key, size) in enumerate(chosen):
        fmt = FORMATS.get(Path(key).suffix.lower(), "csv")
        stem = re.sub(r"[^A-Za-z0-9_.-]", "-", Path(key).stem)[:40] or "object"
        prefix = f"{out_prefix}{run_id}/{stem}/"
        name = f"{run_id}-{i}-{stem}"[:80]
        execution = aws.start_execution(arn, name, {"key": key, "format": fmt, "output_prefix": prefix}, region)
        started.append((execution, key, prefix))
        click.echo(f"started {execution}\n  s3://{in_bucket}/{key} ({size:,} bytes, {fmt}) -> "
                   f"s3://{out_bucket}/{prefix}")
    click.echo(f"results: s3://{out_bucket}/{out_prefix}{run_id}/<object>/<map run id>/ (manifest.json, "
               "SUCCEEDED_*.json: each batch's rows with their outputs and row errors; FAILED_*.json: batches that "
               "failed whole)")
    if wait:
        _follow(aws, region, started, out_bucket, poll_s)


def _follow(aws: Any, region: str, started: list[tuple[str, str, str]], out_bucket: str, poll_s: float) -> None:
    progress = _Progress("batch")
    while True:
        states = [aws.execution(arn, region) for arn, _, _ in started]
        counts = {"total": 0, "succeeded": 0, "failed": 0, "running": 0, "pending": 0}
        for arn, _, _ in started:
            for run in aws.map_runs(arn, region):
                for k in counts:
                    counts[k] += int(run["items"].get(k) or 0)
        done = counts["succeeded"] + counts["failed"]
        running = [s for s in states if s["status"] == "RUNNING"]
        extra = f"{counts['failed']:,} rows in failed batches" if counts["failed"] else ""
        if not counts["total"]:
            extra = f"{len(running)} of {len(states)} executions running; no map run reported yet"
        progress(done, max(counts["total"], done), extra)
        if not running:
            break
        time.sleep(poll_s)
    bad = 0
    for (_arn, key, prefix), state in zip(started, states, strict=True):
        status = state["status"]
        line = f"{status:<10} {key} -> s3://{out_bucket}/{prefix}"
        if status != "SUCCEEDED":
            bad += 1
            why = ": ".join(str(state[k]) for k in ("error", "cause") if state.get(k))
            line += f" ({why})" if why else ""
        click.echo(line)
    if bad:
        raise click.exceptions.Exit(1)


commands = [batch]
