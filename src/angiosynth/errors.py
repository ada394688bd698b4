"""The one base class of the errors a user causes and can fix.

Wrong configuration, unreadable or missing input, a folder of the wrong layout, an unknown prompt
word, an invalid rating: each raises a subclass of `AngiosynthError` whose message names the file
or field. The command line prints these as one line ("error: ...", exit status 2); any other
exception is a bug and keeps its traceback. Like `config`, this module imports nothing else from
angiosynth, so every layer may use it.
"""

from __future__ import annotations


class AngiosynthError(Exception):
    """An expected failure caused by input, configuration or the state of an output folder."""


class OutputExistsError(AngiosynthError, FileExistsError):
    """An output folder holds results already and replacing them was not asked for."""


class InputNotFoundError(AngiosynthError, FileNotFoundError):
    """A file or folder named as input does not exist or lacks what it should hold."""


class OptionError(AngiosynthError, ValueError):
    """An option's value is out of range or names something unknown."""


class DataError(AngiosynthError, ValueError):
    """An image, or a folder of images, cannot be used as it is (unreadable, wrong layout,
    mixed sizes); the message names the file or folder."""
