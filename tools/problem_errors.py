"""The one error of a problem file that cannot be used, apart from tools/problems.py (which
imports torch) so that the command line can catch it without loading torch."""


class ProblemError(Exception):
    """A problem file that cannot be used; the message says which and why."""
