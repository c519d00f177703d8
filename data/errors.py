"""The one exception type for data problems a user can fix."""
from __future__ import annotations


class DataError(Exception):
    """A dataset is missing, corrupted or does not fit the request.

    The message says what is wrong, which file or setting is involved and what to do about it,
    so command-line tools can print it as it is, without a traceback.
    """
