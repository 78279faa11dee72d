"""The client installs from the repository as a package of its own (issue 25): a wheel built
from client/ alone, typed, with its adapters and extras, that imports outside this tree."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import venv
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

CLIENT = Path(__file__).resolve().parent.parent.parent / "client"

pytestmark = pytest.mark.slow


def test_the_client_builds_and_installs_as_its_own_package(tmp_path):
    # Offline: the build backend (hatchling) comes from the lock file, not from an index.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
         "--wheel-dir", str(tmp_path), str(CLIENT)],
        check=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("oversight_client-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "oversight_client/py.typed" in names
    assert {
        "oversight_client/adapters/openai_agents.py",
        "oversight_client/adapters/langgraph.py",
    } <= names
    info = next(n for n in names if n.endswith(".dist-info/METADATA"))
    metadata = Parser().parsestr(zipfile.ZipFile(wheel).read(info).decode())
    assert metadata["Name"] == "oversight-client"
    from oversight_client import __version__

    assert metadata["Version"] == __version__
    assert set(metadata.get_all("Provides-Extra", [])) == {"openai-agents", "langgraph"}
    assert any(r.startswith("httpx") for r in metadata.get_all("Requires-Dist", []))

    # Installed into a fresh environment that sees this one's packages (httpx) after its own,
    # and not the tree: a .pth line adds a directory without reading the .pth files there.
    env = tmp_path / "env"
    venv.create(env, with_pip=False)
    python = env / "bin" / "python"
    purelib = Path(sysconfig.get_path("purelib"))
    (env / purelib.relative_to(sys.prefix) / "outer.pth").write_text(f"{purelib}\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--quiet",
         "--no-index", str(wheel)],
        check=True,
    )  # fmt: skip
    where = subprocess.run(
        [str(python), "-I", "-c", "import oversight_client; print(oversight_client.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(env))
