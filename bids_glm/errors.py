"""Exceptions that map to the command line's documented exit codes."""

EXIT_OK = 0
EXIT_ANALYSIS_FAILURE = 1
EXIT_USAGE = 2
EXIT_INPUT_NOT_USABLE = 3
EXIT_INTERRUPTED = 130  # the shell's code for a process ended by SIGINT (Ctrl-C)


class BidsGlmError(Exception):
    """A failure the user can act on; its message is printed without a traceback."""

    exit_code = EXIT_ANALYSIS_FAILURE


class InputError(BidsGlmError):
    """The input dataset (or an option that points into it) cannot be used.

    The message names the file, the field and what was expected.
    """

    exit_code = EXIT_INPUT_NOT_USABLE


class AnalysisError(BidsGlmError):
    """The analysis could not be completed for a reason other than bad input."""

    exit_code = EXIT_ANALYSIS_FAILURE


class OutputError(AnalysisError):
    """An output could not be written (disk full, no permission, ...).

    The message names the file and the system's reason; nothing partial is left under
    that name.
    """

    exit_code = EXIT_ANALYSIS_FAILURE
