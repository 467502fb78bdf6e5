"""One exception type for everything the user can get wrong.

The CLI turns an `UnrolledError` into one line on stderr and a non-zero exit; library
users catch it (it is a `ValueError`) like any other bad-argument error.
"""


class UnrolledError(ValueError):
    """Bad input: the message is one sentence that says what is wrong and what was expected."""
