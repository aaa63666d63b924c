"""kernelpilot's own commit: KERNELPILOT_COMMIT when set (a GPU machine's copied tree), else git's HEAD."""
import subprocess
from pathlib import Path

from tools.version import own_commit


def test_own_commit_is_the_checkouts_head(monkeypatch):
    monkeypatch.delenv("KERNELPILOT_COMMIT", raising=False)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True)
    assert len(head.stdout.strip()) == 40
    assert own_commit() == head.stdout.strip()


def test_a_named_commit_wins_and_no_git_is_none(monkeypatch):
    monkeypatch.setenv("KERNELPILOT_COMMIT", "0123abc")     # the copy's git history can be older than its files
    assert own_commit() == "0123abc"
    monkeypatch.delenv("KERNELPILOT_COMMIT")
    monkeypatch.setenv("PATH", "")                          # no git to run
    assert own_commit() is None
