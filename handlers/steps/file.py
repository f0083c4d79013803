"""``file``: write content to a file inside DATA_DIR, atomically, with the given mode."""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from pathlib import Path

from pydantic import field_validator

from handlers.exceptions import StepError
from handlers.steps.base import Params, StepContext, StepType
from handlers.transforms import encode_segment


class FileParams(Params):
    path: str
    content: str
    mode: str = "0600"

    @field_validator("path")
    @classmethod
    def _relative(cls, value: str) -> str:
        # What the rules file writes before any template: a path that starts outside
        # DATA_DIR or walks up from it fails every time, so ``check`` says so now.
        literal = re.split(r"\{\{|\{%", value, maxsplit=1)[0]
        if literal.startswith(("/", "~")):
            raise ValueError(
                f"path {value!r} is absolute; file paths are relative to DATA_DIR, e.g. "
                '"kubeconfigs/{{ event.data.id }}.yaml"'
            )
        segments = literal.split("/")
        if ".." in (segments if literal == value else segments[:-1]):
            raise ValueError(f"path {value!r} walks up out of DATA_DIR ('..'); drop the '..'")
        return value

    @field_validator("mode")
    @classmethod
    def _octal(cls, value: str) -> str:
        try:
            mode = int(value, 8)
        except ValueError:
            raise ValueError(f'mode {value!r} must be octal, e.g. "0600"') from None
        if not 0 <= mode <= 0o777:
            raise ValueError(f"mode {value!r} must be between 0000 and 0777")
        return value


def resolve_inside(data_dir: Path, relative: str) -> Path:
    """The absolute path of ``relative`` under ``data_dir``; raise if it would leave it.

    Absolute paths, ``..`` and symlinks that point outside are all refused.
    """
    root = data_dir.resolve()
    if not relative or "\x00" in relative:
        raise StepError(f"file path {relative!r} is empty or invalid", retryable=False)
    target = (root / relative).resolve()
    if target == root or not target.is_relative_to(root):
        raise StepError(
            f"file path {relative!r} points outside DATA_DIR ({root}); "
            "use a path relative to DATA_DIR",
            retryable=False,
        )
    return target


def _write_atomic(target: Path, content: bytes, mode: int) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


async def run(ctx: StepContext, params: FileParams) -> dict[str, str]:
    target = resolve_inside(ctx.data_dir, params.path)
    try:
        await asyncio.to_thread(_write_atomic, target, params.content.encode(), int(params.mode, 8))
    except OSError as exc:
        raise StepError(f"cannot write {target}: {exc.strerror}") from exc
    return {"path": str(target)}


STEP = StepType(
    name="file",
    params=FileParams,
    run=run,
    literal=frozenset({"mode"}),
    # Each value placed into the path is one file name: event data cannot add directories
    # or walk up (``..``), only the rules file's own text can.
    transforms={"path": encode_segment},
    describe=lambda p: f"write {len(p.content)} bytes to DATA_DIR/{p.path} (mode {p.mode})",
)
