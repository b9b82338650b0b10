"""The one exception type users see.

Every problem a user can fix (bad file, bad flag, bad run folder) is raised as
``MedisynthError`` with a message naming the file and the fix; the CLI prints
that message on one line and exits with status 2, without a traceback.
"""


class MedisynthError(Exception):
    """A problem with the user's input that they can fix; the message says how."""


def require(condition: bool, message: str) -> None:
    if not condition:
        raise MedisynthError(message)
