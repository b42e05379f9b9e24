"""The Action's own error."""


class ActionError(Exception):
    """Raise it (or any exception) to fail the login with ``server_error``
    naming the Action and ``message``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = str(message)
