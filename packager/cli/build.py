"""`mlpack build`, `mlpack check`, `mlpack sbom` and `mlpack audit`: the command-line edge of the image
stage (packager/image/build.py, checks.py, sbom.py, audit.py). `build` writes the image's SBOM beside its
build report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from packager import oci
from packager.cli import PROJECT, ArchType, echo_json
from packager.config import spec as spec_mod
from packager.errors import BuildError
from packager.image import audit as audit_mod
from packager.image import build as image_mod
from packager.image import checks, sbom


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:,.1f} MB"


@click.command()
@click.argument("project", type=PROJECT)
@click.option("--arch", type=ArchType(), help="Target architecture (default: runtime.arch, x86_64).")
@click.option("--base", help="Base image: aws, debian, REGISTRY/REPO[:TAG|@sha256:...], oci:PATH or "
              "docker-archive:PATH (default: runtime.base, aws).")
@click.option("--python", type=click.Choice(list(spec_mod.PYTHONS)),
              help="Python version (aws base: picks the tag; other bases decide it themselves).")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path),
              help="Where to write the OCI layout (default: PROJECT/build/<name>/image).")
@click.option("--pull", is_flag=True, help="Ask the registry for the base's tag again instead of reusing the "
              "digest the previous build pinned.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def build(project: Path, arch: str | None, base: str | None, python: str | None, out: Path | None,
          pull: bool, as_json: bool) -> None:
    """Export PROJECT when stale, then build its Lambda image as an OCI layout (no Docker needed)."""
    spec = spec_mod.resolve(spec_mod.load(project),
                            {"runtime.arch": arch, "runtime.base": base, "runtime.python": python})

    def log(message: str) -> None:
        click.echo(message, err=True)

    result = image_mod.build(spec, out=out, pull=pull, log=log)
    sbom_path = sbom.write(result.image, result.report_path.parent / sbom.SBOM_FILE, result.report)
    if as_json:
        echo_json({"digest": result.digest, "layout": str(result.layout), "report": str(result.report_path),
                   "sbom": str(sbom_path),
                   "arch": result.report["arch"], "python": result.report["python"],
                   "base": result.report["base"], "exported": result.exported,
                   "deps_cache_hit": result.deps_cache_hit,
                   "layers": [r.to_json() for r in result.rows], "warnings": list(result.warnings)})
        return
    for w in result.warnings:
        click.secho(f"warning: {w}", fg="yellow", err=True)
    click.echo(f"{spec.name}: {result.digest}")
    click.echo(f"  layout  {result.layout}  ({result.report['arch']}, python {result.report['python']}, "
               f"base {result.report['base']['source']})")
    click.echo(f"  report  {result.report_path}")
    click.echo(f"  sbom    {sbom_path}")
    click.echo(f"  {'layer':<8} {'digest':<19} {'gzip':>11} {'unpacked':>11}  created by")
    for r in result.rows:
        click.echo(f"  {r.name:<8} {r.digest[:19]:<19} {_mb(r.size):>11} {_mb(r.uncompressed_size):>11}  "
                   f"{r.created_by[:60]}")


@click.command()
@click.argument("layout", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--arch", type=ArchType(), help="Which image to check when the layout holds several.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def check(layout: Path, arch: str | None, as_json: bool) -> None:
    """Re-verify an OCI layout: blob digests and sizes, diff_ids, tar normalisation and Lambda's rules."""
    result = checks.check(layout, arch=arch)
    if as_json:
        echo_json({"digest": result.image.manifest.digest, "ok": not result.problems,
                   "problems": list(result.problems), "warnings": list(result.warnings),
                   "layers": [{"digest": s.digest, "size": s.size, "diff_id": s.diff_id,
                               "uncompressed_size": s.uncompressed_size, "entries": s.entries}
                              for s in result.stats]})
    else:
        for w in result.warnings:
            click.secho(f"warning: {w}", fg="yellow", err=True)
    if result.problems:
        raise BuildError(f"{layout}: {len(result.problems)} problem(s)\n  " + "\n  ".join(result.problems),
                         hint="rebuild the image with `mlpack build`")
    if not as_json:
        click.echo(f"{layout}: ok ({result.image.manifest.digest}, {result.image.arch}, "
                   f"{len(result.image.layers)} layers)")


@click.command("sbom")
@click.argument("layout", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--arch", type=ArchType(), help="Which image to describe when the layout holds several.")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the SBOM to this file instead of printing it.")
def sbom_command(layout: Path, arch: str | None, out: Path | None) -> None:
    """Print (or write) the CycloneDX SBOM of an OCI layout: OS packages from its dpkg status, Python
    distributions from their dist-info, the model's sha256 (the wheels' sha256 too, from the build report
    beside the layout)."""
    image, report = _layout_and_report(layout, arch)
    doc = sbom.sbom(image, report)
    if out is not None:
        sbom.write(image, out, report)
        click.echo(f"{out}: {len(doc['components'])} components ({image.manifest.digest})")
    else:
        click.echo(sbom.to_bytes(doc).decode(), nl=False)


def _layout_and_report(layout: Path, arch: str | None) -> tuple[oci.Image, dict[str, Any] | None]:
    image = oci.read_layout(layout, arch=arch)
    report = image_mod.read_report(layout.parent / image_mod.REPORT_FILE)
    if report is not None and report.get("image", {}).get("digest") != image.manifest.digest:
        report = None  # the report of another build
    return image, report


def _sbom_of(target: Path, arch: str | None) -> tuple[dict[str, Any], str]:
    """The SBOM `audit` reads: an SBOM file, a layout (described now), a build folder or a project."""
    if target.is_file():
        return sbom.read(target), str(target)
    if (target / "oci-layout").is_file():
        image, report = _layout_and_report(target, arch)
        return sbom.sbom(image, report), f"{target} (described now)"
    if (target / sbom.SBOM_FILE).is_file():
        return sbom.read(target / sbom.SBOM_FILE), str(target / sbom.SBOM_FILE)
    if (target / spec_mod.SPEC_FILE).is_file():
        spec = spec_mod.resolve(spec_mod.load(target), {})
        found = spec.default_build_dir() / sbom.SBOM_FILE
        if found.is_file():
            return sbom.read(found), str(found)
        raise BuildError(f"{target}: no SBOM at {found}", hint=f"build the image first: mlpack build {target}")
    raise BuildError(f"{target}: neither an SBOM, an image layout, a build folder nor a project",
                     hint="pass build/<name>/sbom.cdx.json, build/<name>/image, build/<name> or the project")


_WHAT = {"python": "Python packages", "debian": "OS packages", "os": "OS packages"}


@click.command("audit")
@click.argument("target", type=click.Path(exists=True, path_type=Path))
@click.option("--arch", type=ArchType(), help="Which image of a layout holding several.")
@click.option("--skip", type=click.Choice(["python", "debian"]), multiple=True,
              help="Leave these packages unchecked on purpose (said in the report; the audit can then pass "
                   "without them).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def audit(target: Path, arch: str | None, skip: tuple[str, ...], as_json: bool) -> None:
    """Check an image's packages for known vulnerabilities, from its SBOM (TARGET: a project, build/<name>,
    its image layout or an sbom.cdx.json): Python distributions with pip-audit, Debian packages against
    Debian's security tracker. Exits 1 on findings, 3 when some packages could not be checked."""
    doc, where = _sbom_of(target, arch)
    result = audit_mod.audit(doc, skip=skip)
    if as_json:
        echo_json({"sbom": where, **result.to_json()})
    else:
        click.echo(f"audit of {result.image or where} ({where})")
        for c in result.coverage:
            state = (f"checked ({c.source})" if c.checked
                     else f"NOT CHECKED: cannot check {_WHAT[c.ecosystem]}: {c.note}")
            click.echo(f"  {c.ecosystem:<7} {c.packages:>4} packages  {state}")
        for eco in result.skipped:
            click.echo(f"  {eco:<7} skipped (--skip {eco})")
        for f in result.findings:
            fixed = f"fixed in {', '.join(f.fixed)}" if f.fixed else "no fix published"
            click.echo(f"  {f.ecosystem:<7} {f.package} {f.version}: {f.id} ({fixed}) {f.summary[:80]}".rstrip())
    if result.findings:
        n = len(result.findings)
        raise audit_mod.AuditError(f"{n} known vulnerabilit{'y' if n == 1 else 'ies'} in {where}",
                                   hint="rebuild on a fresh base and raise the dependencies' versions (docs/SECURITY.md"
                                        ": refreshing bases and dependencies)")
    if not result.complete:
        missing = [f"{_WHAT[c.ecosystem]}: {c.note}" for c in result.coverage if not c.checked]
        raise audit_mod.AuditIncomplete("the audit is incomplete: cannot check " + "; cannot check ".join(missing),
                                        hint="run it where the vulnerability data can be reached, or pass --skip "
                                             "to leave those packages out on purpose")


@click.command("pin-base")
@click.argument("base", default="debian")
@click.option("--arch", "arches", type=ArchType(), multiple=True, help="Architecture(s) to pin (default: x86_64).")
@click.option("--python", help="runtime.python for the aws base (default: the base's).")
@click.option("--refresh", is_flag=True, help="Build the debian base anew (or resolve a registry base's tag anew) "
              "instead of pinning what this machine has; prints the package-version diff against the old pin.")
@click.option("--push", "push_to", metavar="REGISTRY/REPO", help="Also push the base there and record where, so a "
              "machine without it (a fresh CI runner) pulls the pinned digest instead of building another.")
@click.option("--dir", "where", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              help="A folder of the repository (default: here); the pins go to mlpack.bases.json at its root.")
def pin_base(base: str, arches: tuple[str, ...], python: str | None, refresh: bool, push_to: str | None,
             where: Path) -> None:
    """Pin BASE (debian, aws, or a registry reference) by digest in mlpack.bases.json, for every build of the
    repository: the same base on every machine and day. Commit the file; refreshing is a reviewable change."""
    from packager.image import bases
    from packager.image import pins as pins_mod

    path = pins_mod.default_path(where)
    for arch in arches or ("x86_64",):
        name = pins_mod.key(base, arch)
        old = pins_mod.read(path).get(name)
        got = bases.resolve(base, arch=arch, python=python, pull=refresh, fresh=refresh,
                            log=lambda line: click.echo(line, err=True))
        digest = got.image.digest
        packages = bases.debian_packages(digest) if base.strip() == "debian" else {}
        image = old.image if old and old.digest == digest else None
        if push_to:
            image = _push_base(got.image, push_to, base, arch)
        changed = pins_mod.record(path, name, pins_mod.Pin(digest=digest, image=image, packages=packages))
        click.echo(f"{name}: {digest}" + (f" (from {image})" if image else "")
                   + ("" if changed else f"; {path.name} already pins it"))
        if old and old.digest != digest:
            click.echo(f"  was {old.digest}")
            for line in pins_mod.package_diff(old.packages, packages):
                click.echo(f"  {line}")
    click.echo(f"{path}: commit it with the change that needs it")


def _push_base(image: oci.Image, to: str, base: str, arch: str) -> str:
    """Push the base image to `to` (tagged <base>-<arch>-<12 hex>); its REPO@digest."""
    from packager.registry import destination as dest_mod
    from packager.registry import push as push_mod
    from packager.registry.ref import ImageRef

    ref = ImageRef.parse(to, default_tag=None)
    tag = push_mod.image_tag(f"{base.strip().replace('/', '_')}-{arch}", image.digest)
    dest = dest_mod.connect(ref.with_tag(ref.tag or tag))
    with dest.client as client:
        plan = push_mod.plan_push(image, dest.ref, client, repositories=dest.repositories)
        push_mod.check_plan(plan)
        result = push_mod.execute(plan, image, client, repositories=dest.repositories)
    click.echo(f"  pushed {result.ref.name}@{result.ref.digest} ({result.bytes_sent:,} bytes sent)", err=True)
    return f"{result.ref.name}@{image.digest}"


commands = [build, check, sbom_command, audit, pin_base]
