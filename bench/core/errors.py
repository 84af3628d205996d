"""User-facing errors: the CLI prints them as one line and exits with status 2 (``--debug`` shows the traceback)."""


class BenchError(Exception):
    """A problem the user can fix (bad input, missing file, ...). The message is the whole story, on one line."""

    exit_code = 2


class NeedsTraining(BenchError):
    """A robust encoder was asked for whose checkpoint does not exist yet."""


class TrainingCollapsed(BenchError):
    """Adversarial fine-tuning collapsed the embedding and the user asked to fail on that."""

    exit_code = 3
