"""The generated references match the code: docs/PROJECT.md and docs/CLI.md."""

from packager.cli import docgen
from packager.config import spec


def test_generated_docs_are_current() -> None:
    stale = [str(p) for p, text in docgen.generated().items() if not p.exists() or p.read_text() != text]
    assert not stale, f"regenerate with `python -m packager.cli.docgen`: {stale}"


def test_project_reference_lists_every_key() -> None:
    text = docgen.project_reference()
    for key, *_ in spec.schema_reference():
        assert f"`{key}`" in text
