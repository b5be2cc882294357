"""Ray's token authentication, checked before joining a cluster.

Ray 2.60 switches token authentication on for a cluster whose head finds a token
(``~/.ray/auth_token``; a plain local ``ray.init()`` writes one), and a driver joining an
explicit address sends a token only with ``RAY_AUTH_MODE=token``. Without it ``ray.init``
retries for half a minute and says only "Failed to connect". One unauthenticated gRPC call to
the cluster's GCS (milliseconds) tells the two apart first, so the message can say what to set.
"""

from __future__ import annotations

import os
from pathlib import Path

from acc.executors import ExecutorError, ray_gcs

DEFAULT_TOKEN = Path("~/.ray/auth_token")
REFUSED_WORDS = ("InvalidAuthToken", "Unauthenticated", "UNAUTHENTICATED")
HOW_TOKENS_WORK = (
    "every node and the driver need RAY_AUTH_MODE=token and the same token: the head's "
    "~/.ray/auth_token copied to the same place on each machine, or RAY_AUTH_TOKEN set to it "
    "(see the README's Ray cluster section)"
)


def token_here() -> tuple[str | None, str]:
    """This machine's token as Ray reads it, and where it came from: ``RAY_AUTH_TOKEN``, else
    the file ``RAY_AUTH_TOKEN_PATH`` names, else ``~/.ray/auth_token``."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip(), "RAY_AUTH_TOKEN"
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or DEFAULT_TOKEN).expanduser()
    try:
        return path.read_text().strip() or None, str(path)
    except OSError:
        return None, str(path)


def token_mode() -> bool:
    return os.environ.get("RAY_AUTH_MODE", "").strip().lower() == "token"


def check_authentication(address: str) -> None:
    """An ExecutorError saying what to set when the cluster at ``address`` (HOST:PORT, known
    to answer) refuses the token this driver would send, or the lack of one. Any other
    answer is left to ``ray.init``."""
    token, source = token_here() if token_mode() else (None, "")
    if not _refused(address, token):
        return
    if not token_mode():
        raise ExecutorError(
            f"the Ray cluster at {address} requires token authentication and this driver "
            f"sends no token: set RAY_AUTH_MODE=token here; {HOW_TOKENS_WORK}"
        )
    if token is None:
        raise ExecutorError(
            f"RAY_AUTH_MODE=token is set but there is no token at {source}: copy the head's "
            f"~/.ray/auth_token there; {HOW_TOKENS_WORK}"
        )
    raise ExecutorError(
        f"the Ray cluster at {address} refused this driver's token (from {source}): it is "
        f"not the cluster's; {HOW_TOKENS_WORK}"
    )


def refused_for_token(exc: BaseException) -> bool:
    """Whether a failed ``ray.init`` (ConnectionError, its causes) was an authentication
    failure: the probe catches it first, this catches a cluster that changed in between."""
    seen: BaseException | None = exc
    while seen is not None:
        if any(words in str(seen) for words in REFUSED_WORDS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _refused(address: str, token: str | None) -> bool:
    """One GCS call, with the token if given: True only for UNAUTHENTICATED."""
    return ray_gcs.call(address, token) == "UNAUTHENTICATED"
