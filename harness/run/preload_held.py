"""The forkserver's preload, as harness/run/process.py names it: harness/run/preload.py imported with what the
libraries print meanwhile held back from the terminal `bench run` shares with the server, for each case's log
(harness/run/library_log.py)."""

from harness.run.library_log import import_holding

import_holding("harness.run.preload")
