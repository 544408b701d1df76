"""The documented exit codes, and the error that carries one to the command line."""

OK = 0
FAILED = 1  # the deployment failed, the version is invalid, the request was refused as invalid
USAGE = 2  # a wrong option or argument, no URL or token, a token the portal refuses (401/403)
REJECTED = 3  # an engineer rejected the deployment, or it was cancelled
TIMED_OUT = 4  # --wait gave up after --timeout seconds

HELP = """\b
Exit codes:
  0  success
  1  failed or invalid (a failed deployment, an invalid version, a 4xx/5xx answer)
  2  usage or auth error (bad options, no MLOPS_URL/MLOPS_TOKEN, 401, 403)
  3  rejected or cancelled
  4  timed out (--wait past --timeout)"""


class CliError(Exception):
    """Stops the command: `message` goes to stderr and `code` is the exit code."""

    def __init__(self, message: str, code: int = FAILED):
        super().__init__(message)
        self.code = code
