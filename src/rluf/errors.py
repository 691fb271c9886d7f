"""rluf's exceptions. Every user-facing problem raises one of these; the CLI prints it without a traceback."""


class RlufError(Exception):
    """Base class for errors the user can fix (bad input, bad config, missing files)."""


class ConfigError(RlufError, ValueError):
    """A config file or option is invalid. The message names the file, the field and the rule."""


class SchemaError(RlufError, ValueError):
    """A table does not have the columns or types rluf expects."""


class DataError(RlufError, ValueError):
    """Data is present but unusable (empty split, no positives, ...)."""


class ModelFolderError(RlufError, ValueError):
    """A model folder is missing rluf metadata or has the wrong head."""
