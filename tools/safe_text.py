"""Untrusted text made safe to show and to keep: `clean(text)`.

A candidate controls its exception messages, tracebacks and everything it prints, and a
worker's replies come from the candidate's process. Before such text is kept (the
verdict's reason and log, the history store, checkpoints, the policy's context) or
shown (the terminal, report.md, HTML), `clean` does two things:

- neutralise: terminal escape sequences (CSI such as a clear screen or a colour, OSC such
  as a window title or a hyperlink, DCS/SOS/PM/APC strings, two-byte ESC commands) are
  removed whole; the other C0 and C1 controls, DEL and lone surrogates are removed; a
  carriage return becomes a newline (CRLF one newline), so nothing overwrites a line;
  Unicode format characters (bidi overrides, zero-width characters, tag characters that
  hide text from a reader but not from a model) are removed. Newline and tab stay.
- redact: the values of this process's secrets (environment variables whose names look
  secret — *KEY*, *TOKEN*, *SECRET*, *PASSWORD*, ... — and the password of any URL in the
  environment, plus values registered with `also_redact`, e.g. an API key read from
  config.toml) become `[redacted NAME]`. Values shorter than MIN_SECRET are left alone:
  they would match ordinary words.

Neutralising runs first, so a secret split by escape sequences or zero-width characters
is still found. Redaction is defence in depth, not containment: a candidate that encodes a
secret (reversed, base64, one character a line) gets it past; keeping secrets out of the
sandbox's reach is the sandbox's job (tools/THREAT_MODEL.md).

    from tools.safe_text import clean
    reason = clean(reply.message)

Standard library only.
"""
import os
import re
import unicodedata
from typing import Mapping
from urllib.parse import unquote

MIN_SECRET = 8
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|CREDENTIAL|AUTH|PRIVATE|COOKIE", re.I)
URL_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]*:([^/\s@]+)@", re.I)

ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]?"                 # CSI: parameters, intermediates, final byte
    r"|\x1b\][^\x07\x1b\n]*(?:\x07|\x1b\\)?"    # OSC, ended by BEL or ST (or the line's end)
    r"|\x1b[PX^_][^\x1b\n]*(?:\x1b\\)?"         # DCS, SOS, PM, APC strings
    r"|\x1b[ -/]*[0-~]?"                        # two-byte and nF escapes, a lone ESC
    r"|\r\n?"                                   # carriage return: a newline, never an overwrite
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]"   # other C0, DEL, C1, lone surrogates
)

_registered: dict[str, str] = {}


def clean(text: str, environ: Mapping[str, str] | None = None) -> str:
    """`text` neutralised, then with the process's secrets redacted."""
    return redact(neutralise(text), secrets(environ))


def neutralise(text: str) -> str:
    """`text` with no escape sequence, no control character but newline and tab, no
    carriage return and no invisible format character."""
    text = ESCAPES.sub(_replacement, text)
    if text.isascii():
        return text
    return "".join(c for c in text if c.isascii() or unicodedata.category(c) != "Cf")


def _replacement(match: re.Match) -> str:
    return "\n" if match.group().startswith("\r") else ""


def secrets(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Secret values to redact, each with the name it is shown under: the environment's
    (os.environ unless given) and those registered with `also_redact`."""
    environ = os.environ if environ is None else environ
    found = dict(_registered)
    for name, value in environ.items():
        if SECRET_NAME.search(name):
            found[value] = name
        for password in URL_PASSWORD.findall(value):
            found[password] = name
            found[unquote(password)] = name
    return {value: name for value, name in found.items() if len(value) >= MIN_SECRET}


def redact(text: str, values: Mapping[str, str]) -> str:
    """`text` with each value of `values` (value → name) replaced by `[redacted NAME]`,
    the longest first (one secret may contain another)."""
    for value in sorted(values, key=len, reverse=True):
        if value in text:
            text = text.replace(value, f"[redacted {values[value]}]")
    return text


def also_redact(name: str, value: str) -> None:
    """Treat `value` as a secret of this process from now on (a key read from a file, not
    the environment)."""
    _registered[value] = name
