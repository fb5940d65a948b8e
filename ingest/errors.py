"""One root for liveprof's own errors; ``protocol`` keeps its ``DecodeError``."""


class LiveprofError(Exception):
    """Root of the errors liveprof raises itself."""


class SourceError(LiveprofError):
    """A source could not deliver bytes (cannot open, lost connection, ...)."""


class ConfigError(LiveprofError):
    """The configuration is invalid."""
