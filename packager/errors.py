"""Domain errors. Internal code raises these; only packager/cli turns them into exit codes and messages.

Imports nothing from the rest of mlpack.
"""

from __future__ import annotations


class MlpackError(Exception):
    """An error the user can act on: what failed, on what, and what to do about it."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class SpecError(MlpackError):
    """mlpack.toml is missing, unreadable or invalid. Carries every problem found, not just the first."""

    exit_code = 2

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(f"{path}: {len(problems)} {noun}\n{lines}")


class ExportError(MlpackError):
    """The source model or its samples could not be loaded, converted or verified."""


class ParityError(ExportError):
    """The ONNX model disagrees with the original beyond tolerance."""


class BuildError(MlpackError):
    """An image could not be built or failed Lambda's rules."""


class RegistryError(MlpackError):
    """A registry refused, failed or could not be reached."""


class DeployError(MlpackError):
    """The lock file and the model projects do not agree, or a stack cannot be described."""
