"""The one exception type for bad input: its message names the bad value and the fix."""


class InfkitError(Exception):
    """A user-facing error: entry scripts print its message as one line and exit non-zero."""
