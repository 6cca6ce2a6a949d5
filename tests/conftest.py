"""Test-session settings."""

from __future__ import annotations

import signal

# A shell that starts a command in the background (`cmd &` without job control) makes it ignore SIGINT, and
# its children inherit that. The signal tests need Python's usual Ctrl-C handling, in this process and in
# the sweeps and runs it starts, whatever started the test session.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
