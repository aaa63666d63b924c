"""kernelpilot's own commit: git's answer in a checkout, KERNELPILOT_COMMIT where git has none."""
import subprocess
from pathlib import Path

from tools.version import own_commit


def test_own_commit_is_the_checkouts_head(monkeypatch):
    monkeypatch.setenv("KERNELPILOT_COMMIT", "not-this-one")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True)
    assert own_commit() == head.stdout.strip()


def test_own_commit_without_git_is_the_named_one_or_none(monkeypatch):
    monkeypatch.setenv("PATH", "")                  # no git to run: a copied working tree on a GPU machine
    monkeypatch.setenv("KERNELPILOT_COMMIT", "0123abc")
    assert own_commit() == "0123abc"
    monkeypatch.delenv("KERNELPILOT_COMMIT")
    assert own_commit() is None
