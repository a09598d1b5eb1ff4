"""The one exception type for errors a user can cause or fix, defined with the results that raise it too."""

from results.errors import LmscopeError

__all__ = ["LmscopeError"]
