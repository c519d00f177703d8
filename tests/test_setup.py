"""scripts/setup.sh's data step: a copy found where the loaders look is used as it is, and without it and
without root the script says what to do and fails, never reaching apt-get or a sudo prompt. Debian's folder
is hidden by a tmpfs in a mount namespace of the test's own (so: root); `id`, `sudo` and `apt-get` are
stand-ins that record being called."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cluster import ROOT

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                                 reason="hides /usr/share/datasets in a mount namespace: needs root and unshare")]


def _setup(tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    calls = tmp_path / "calls"
    for name, body in (("id", 'echo 1000'), ("sudo", f'echo "sudo $*" >> {calls}; exit 1'),
                       ("apt-get", f'echo "apt-get $*" >> {calls}; exit 0')):
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    script = "mount -t tmpfs none /usr/share/datasets && exec bash scripts/setup.sh"
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path), **env})
    return done, calls.read_text() if calls.exists() else ""


def test_a_copy_elsewhere_is_used_and_without_one_the_script_says_what_to_do(tmp_path):
    if not Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.fail("this test copies Debian's Fashion-MNIST: run scripts/setup.sh first")
    copy = tmp_path / "data" / "fashion-mnist"
    shutil.copytree("/usr/share/datasets/fashion-mnist", copy)
    found, calls = _setup(tmp_path, {"MP2_DATA": str(copy.parent)})
    assert found.returncode == 0, found.stderr
    assert f"setup: Fashion-MNIST found in {copy}" in found.stdout and calls == ""

    missing, calls = _setup(tmp_path, {"MP2_DATA": str(tmp_path / "nothing")})
    assert missing.returncode == 1
    assert "needs root" in missing.stderr and "apt-get install dataset-fashion-mnist" in missing.stderr
    assert "MP2_DATA=DIR" in missing.stderr and calls == "sudo -n true\n"  # asked without a prompt, nothing installed
