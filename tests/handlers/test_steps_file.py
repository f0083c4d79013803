"""The file step writes atomically: a reader sees the old content or the new, never half."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from handlers.steps import file as file_step


def test_replaces_the_whole_file_with_its_mode_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "kubeconfigs" / "k.yaml"
    file_step._write_atomic(target, b"first", 0o600)
    file_step._write_atomic(target, b"second version", 0o640)
    assert target.read_bytes() == b"second version"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert [p.name for p in target.parent.iterdir()] == ["k.yaml"]


def test_a_failed_write_keeps_the_old_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "k.yaml"
    file_step._write_atomic(target, b"old", 0o600)

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError):
        file_step._write_atomic(target, b"new content that never lands", 0o600)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["k.yaml"]  # the temporary is gone
