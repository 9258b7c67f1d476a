"""fsutil on the real file system: the one umask read, the one disk-space check, atomic writes' modes."""

from __future__ import annotations

import os
import shutil

import pytest

from dcgan_cli import fsutil
from dcgan_cli.errors import DcganError


def test_current_umask_reads_without_changing_it(tmp_path):
    old = os.umask(0o027)
    try:
        assert fsutil.current_umask() == 0o027
        assert fsutil.current_umask() == 0o027  # still set: reading did not change it
        fsutil.write_text(tmp_path / "a.txt", "x")  # atomic writes get the mode a plain open() would
        assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


def test_check_space_is_a_one_line_error_naming_the_fix(tmp_path):
    fsutil.check_space(tmp_path, 0, "nothing")
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(DcganError) as e:
        fsutil.check_space(tmp_path, free * 2 + 10**9, "extracting big.zip")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("extracting big.zip needs ") and str(tmp_path) in msg
    assert "free some space or use --data-dir" in msg
