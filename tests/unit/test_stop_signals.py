"""The long-running commands stop on SIGTERM or SIGINT, and on both at once: Ctrl-C under
`soap-service dev` sends SIGINT from the terminal and SIGTERM from the parent, and a second
handler running inside the first one's Event.set() used to deadlock the process."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.support import REPO

# In a child process, so that pytest's own handlers stay as they are.
SECOND_SIGNAL_DURING_SET = textwrap.dedent(
    """
    import os, signal
    from soap_service.cli import _stop_on_signals

    stop = _stop_on_signals()
    os.kill(os.getpid(), signal.SIGTERM)
    print("stop set:", stop.is_set())
    with stop._cond:  # where the first handler is while it sets the event
        os.kill(os.getpid(), signal.SIGINT)
        print("second signal returned")
    """
)


def test_a_second_stop_signal_during_the_first_ones_set_neither_deadlocks_nor_raises() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SECOND_SIGNAL_DURING_SET],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,  # the old handler hung here for ever
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines() == [
        "stop set: True",
        "second signal returned",
    ]
