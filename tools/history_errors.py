"""The history store's one error, and how a database failure becomes it.

`HistoryError` says in one line which store (a SQLite file, or a URL without its password)
and why: an unknown URL scheme, a missing driver, a file that is not a database, a full
disk, a folder that cannot be written, a lost server. `loud(doing)` wraps a store method
so that SQLAlchemy's errors leave it as one; `engine_for(url)` refuses what cannot be a store.
"""
import functools
import re
import tempfile
from pathlib import Path

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError


class HistoryError(RuntimeError):
    """The store cannot be used: an unknown URL, an unreachable server, a file that is not
    a database, a full disk, a database from a newer version. The one error every method
    raises for a failure of the store itself, with one line saying which store (a file, or
    a URL without its password) and why."""

    def __init__(self, store: str, cause: str, doing: str = "use"):
        self.store, self.cause = store, cause
        super().__init__(f"cannot {doing} the history store at {store}: {cause}")


def loud(doing: str):
    """A store method whose database failures (a full disk, a corrupt file, a lost server)
    raise HistoryError saying what it was doing, on which store, and why."""
    def wrap(method):
        @functools.wraps(method)
        def run(self, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            except DBAPIError as error:
                raise HistoryError(self.where, _cause(error) + _folder_note(self.engine), doing) from error
        return run
    return wrap


def _cause(error: DBAPIError) -> str:
    return (str(error.orig if error.orig is not None else error).strip().splitlines() or [type(error).__name__])[0]


def _folder_note(engine: Engine) -> str:
    """Why SQLite could not open or write its file, where its own words ("unable to open
    database file") do not say: the folder is missing or cannot be written."""
    if engine.dialect.name != "sqlite" or not engine.url.database:
        return ""
    folder = Path(engine.url.database).parent
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as error:
        return f" ({folder}: {error.strerror})"
    return ""


def engine_for(url: str, dialects) -> Engine:
    """An engine for `url`, or HistoryError naming what is wrong with it (no secret shown)."""
    shown = without_password(url)
    try:
        engine = create_engine(url)
    except NoSuchModuleError:
        raise HistoryError(shown, f"unknown database URL scheme '{url.partition(':')[0]}' (kernelpilot "
                                  f"stores history in sqlite:///PATH or postgresql+psycopg://...)", "open") from None
    except ArgumentError as error:
        raise HistoryError(shown, f"not a database URL ({error})", "open") from None
    except ImportError as error:
        raise HistoryError(shown, f"the database driver is not installed ({error})", "open") from None
    if engine.dialect.name not in dialects:
        raise HistoryError(shown, f"kernelpilot supports SQLite and PostgreSQL, not {engine.dialect.name}", "open")
    return engine


def without_password(url: str) -> str:
    """The file of a SQLite URL, or the URL with its password hidden."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", url)
    if parsed.get_backend_name() == "sqlite":
        return parsed.database or "an in-memory SQLite database"
    return parsed.render_as_string(hide_password=True)
