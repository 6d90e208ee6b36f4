"""Peers side by side: the node vs a naive loop and the face_recognition library.

Same video, same watchlist subjects (each system enrols them with its own model), one system
per child process, one after another. Prints the fps ratios and the alerts each found.
A shortcut for ``edge bench --peers --no-live --no-zeroize-ab`` writing to out/bench/peers/.

face_recognition needs the ``peers`` extra plus ``pip install --no-deps face_recognition==1.3.0``
(see benchmarks/README.md); without it that row says why it was skipped.

    python benchmarks/peers.py [--video PATH] [--peer-frames N] [--out DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT  # noqa: E402

from edge.cli import main  # noqa: E402

if __name__ == "__main__":
    args = sys.argv[1:]
    if "--out" not in args:
        args += ["--out", str(OUT / "peers")]
    sys.argv = [sys.argv[0], "bench", "--peers", "--no-live", "--no-zeroize-ab", *args]
    main()
