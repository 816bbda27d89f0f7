"""Errors meant for the user: the CLI prints their message on one line and exits non-zero."""


class LivefilterError(Exception):
    """A problem the user can act on (bad input, missing device, bad model)."""

    exit_code = 2
