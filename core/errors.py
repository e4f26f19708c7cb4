"""The exception types that mean "the user's input is wrong" (CLI exit code 2), and a student that diverged."""


class BadInput(Exception):
    """Bad config, data, store or checkpoint; the message is one line naming the field or file."""


class NumericalFault(BadInput):
    """A loss or the features became NaN or Inf: the stage stops, naming the model, epoch and term (usually a
    learning rate too high for the data)."""


class StudentDiverged(NumericalFault):
    """A student cell's loss term became NaN or Inf. With ``students.on_diverge: record`` the cell is recorded as
    diverged and the study goes on; with ``fail`` it stops the stage like any numerical fault (exit 2)."""

    def __init__(self, cell: str, term: str, epoch: int, value: float):
        super().__init__(f"student {cell}: loss term {term} is {value} at epoch {epoch}")
        self.cell, self.term, self.epoch, self.value = cell, term, epoch, value
