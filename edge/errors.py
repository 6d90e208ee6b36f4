"""Errors that stop a command with one clear line and a non-zero exit.

Messages must never carry pixels, embeddings or landmarks: they name the item
(file, key, URL) and the reason, nothing more.
"""


class EdgeError(Exception):
    """A user-facing failure: the CLI prints ``error: <message>`` and exits 2."""


class ConfigError(EdgeError):
    """The configuration file is missing, unreadable or invalid."""


class ModelError(EdgeError):
    """A model file is missing, corrupt (sha256 mismatch) or cannot be loaded."""


class SourceError(EdgeError):
    """A frame source cannot be opened (missing camera, bad URL, unreadable file)."""


class WatchlistError(EdgeError):
    """A watchlist is missing, tampered, expired or cannot be decrypted."""
