"""The one exception type for errors a user can cause or fix."""


class LmscopeError(Exception):
    """A user-facing error: its message is shown as is, in the UI or on the CLI's stderr."""
