"""User-facing errors: one line naming the problem and the fix; the CLI exits with code 2."""


class VitbenchError(Exception):
    """A bad input or environment problem that the user can fix.

    The message is a single line stating what is wrong and how to fix it. The CLI prints it
    as ``error: <message>`` and exits with status 2; library callers can catch it.
    """
