"""Whole-file writes that a crash, a kill or a full disk cannot leave half done: the text goes
to a temporary file beside the target (a name no other writer picks), then replaces it in one
rename, so a reader sees the old file or the new one, never a mix; two writers racing leave one
whole file.

    write_atomic(path, text)        # the folder must exist
"""
import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
