"""Run a module under cProfile timed by CPU, not wall-clock, time: on a shared machine a process that waits for a
core would otherwise charge the wait to whatever it was running (`python -m cProfile` has no such option).

  python -m bench.cpu_profile OUT.prof -m MODULE [ARGS...]

The statistics are written to OUT.prof at exit (SIGTERM included); read them with `pstats`.
"""

from __future__ import annotations

import cProfile
import runpy
import signal
import sys
import time


def main() -> None:
    out, flag, module, *args = sys.argv[1:]
    if flag != "-m":
        raise SystemExit(__doc__)
    profile = cProfile.Profile(time.process_time)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sys.argv = [module, *args]
    profile.enable()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        profile.disable()
        profile.dump_stats(out)


if __name__ == "__main__":
    main()
