"""What the engine raises that the web side also names: plain exceptions, no torch, so
that a Django process can catch or word them without loading the model's libraries."""


class ModelLoadError(Exception):
    """The model named by a spec cannot be loaded; the message says why and what to do."""


class InspectError(ValueError):
    """A look inside the model asked for something the model or the text does not have."""


class CorpusError(ValueError):
    """Text that cannot be trained on; the message says what is wrong with it."""


class TrainingError(ValueError):
    """A training run that cannot start or go on; the message says why."""


# What a training job with neither stories nor files is told, wherever it is set up.
EMPTY_CORPUS = "The corpus is empty: choose stories or upload .txt files."
