"""The one exception type that means "the user's input is wrong" (CLI exit code 2)."""


class BadInput(Exception):
    """Bad config, data, store or checkpoint; the message is one line naming the field or file."""


class NumericalFault(BadInput):
    """A loss or the features became NaN or Inf: the stage stops, naming the model, epoch and term (usually a
    learning rate too high for the data)."""
