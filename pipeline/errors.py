"""The one exception type that means "the user's input is wrong" (CLI exit code 2)."""


class BadInput(Exception):
    """Bad config, data, store or checkpoint; the message is one line naming the field or file."""
