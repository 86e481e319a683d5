"""What a run records of the code it ran: a dirty checkout's changes, new files included."""

from __future__ import annotations

import subprocess
from pathlib import Path

from transferlab.repro import UNTRACKED_LIMIT, code_diff


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_the_code_diff_holds_edits_and_untracked_files_but_not_ignored_or_large_ones(tmp_path):
    repo = tmp_path / "checkout"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "core.py").write_text("x = 1\n")
    (repo / ".gitignore").write_text("data/\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start")
    (repo / "pkg" / "core.py").write_text("x = 2\n")
    (repo / "pkg" / "new_module.py").write_text("def helper():\n    return 3\n")
    (repo / "data").mkdir()
    (repo / "data" / "ignored.txt").write_text("not code\n")
    (repo / "pkg" / "weights.bin").write_bytes(b"\0" * (UNTRACKED_LIMIT + 1))
    diff = code_diff(repo / "pkg")
    assert "-x = 1\n+x = 2" in diff
    assert "+++ b/pkg/new_module.py" in diff and "+def helper():" in diff
    assert "ignored.txt" not in diff and "weights.bin" not in diff
    # The recorded diff rebuilds the dirty tree from the commit.
    _git(repo, "stash", "-u", "-q")
    (repo / "pkg" / "weights.bin").unlink(missing_ok=True)
    (tmp_path / "run.diff").write_text(diff)
    _git(repo, "apply", str(tmp_path / "run.diff"))
    assert (repo / "pkg" / "new_module.py").read_text() == "def helper():\n    return 3\n"
    assert (repo / "pkg" / "core.py").read_text() == "x = 2\n"


def test_a_dangling_untracked_link_is_left_out_not_an_error(tmp_path):
    repo = tmp_path / "checkout"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "module.py").write_text("y = 1\n")
    (repo / "broken_link").symlink_to(repo / "nowhere")
    diff = code_diff(repo)
    assert "+y = 1" in diff and "broken_link" not in diff
