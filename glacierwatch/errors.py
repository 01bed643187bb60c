"""Typed errors. Every error a user can cause derives from :class:`GlacierwatchError`;
the CLI prints its message on one line (no traceback) and exits with status 2."""


class GlacierwatchError(Exception):
    """Base class of all errors glacierwatch raises on purpose."""


class InputError(GlacierwatchError):
    """A user-supplied file, table or argument is unusable (the message says which and why)."""


class ConfigError(GlacierwatchError):
    """The configuration file is malformed or holds an invalid value."""


class DatasetNotFoundError(GlacierwatchError):
    """An expected input file or folder does not exist."""


class SceneReadError(GlacierwatchError):
    """A scene GeoTIFF cannot be read or lacks what a scene must have (bands, CRS)."""


class ChannelMismatchError(GlacierwatchError):
    """A model checkpoint's channels do not match the input it is given."""
