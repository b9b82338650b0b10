"""The entry point (``medisynth.cli.main``): what a user sees when a command fails."""
from __future__ import annotations

import errno

import pytest

import medisynth.phantom.fundus as fundus


def fail_with(error: OSError):
    def generate(*args, **kwargs):
        raise error
    return generate


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_is_one_line_naming_the_file(medisynth_cli, monkeypatch, tmp_path, code):
    written = tmp_path / "ph" / "images" / "phantom_000007.png"
    monkeypatch.setattr(fundus, "generate_fundus_dataset", fail_with(OSError(code, "No space left on device", str(written))))
    status, out = medisynth_cli("phantom", "fundus", "--out", tmp_path / "ph", "--n", "10")
    assert status == 2
    lines = out.strip().splitlines()
    assert len(lines) <= 3 and "Traceback" not in out  # one message (the console may wrap it)
    text = " ".join(lines)
    assert text.startswith("error: No space left on device writing") and str(written) in out.replace("\n", "")
    assert "free disk space" in text and "--resume RUN" in text


def test_any_other_os_error_is_not_hidden(medisynth_cli, monkeypatch, tmp_path):
    # only a full disk is the user's to fix; anything else is a bug, and its traceback is what finds it
    monkeypatch.setattr(fundus, "generate_fundus_dataset", fail_with(OSError(errno.EIO, "Input/output error")))
    with pytest.raises(OSError, match="Input/output error"):
        medisynth_cli("phantom", "fundus", "--out", tmp_path / "ph", "--n", "10")
