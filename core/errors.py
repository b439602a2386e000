"""Errors a user can act on.

Every failure caused by input, configuration or missing files is raised as a ``WorkbenchError``
whose message says what went wrong and what to do. The CLI and the pages print the message
instead of a traceback; anything else is a bug.
"""


class WorkbenchError(Exception):
    """An error with a message meant for the user."""


class ImageError(WorkbenchError):
    """An image file could not be read or is unusable."""


class DatasetError(WorkbenchError):
    """A dataset is missing, empty or inconsistent."""


class WeightsError(WorkbenchError):
    """Model weights are missing or invalid."""


class RunError(WorkbenchError):
    """A run does not exist or is in the wrong state for the request."""


class VectorStoreError(WorkbenchError):
    """The vector store is unreachable, or a query does not fit the collection."""


class RunCancelled(Exception):
    """Raised inside a run when the user cancelled it (not an error: the run ends as 'cancelled')."""
