"""The benchmark behind ``edge bench`` and ``benchmarks/``: how fast the node is, here.

Why it is built this way:

- Each measured system (the node with zeroization on, the node with it off, the node fed by a
  simulated live camera, the naive loop, ``face_recognition``) runs in its **own child
  process**, one after the other (:mod:`edge.lab.bench.children`). Peak memory then belongs
  to that system alone, one run's threads and caches cannot slow the next, and the
  zeroization-off switch (an environment variable the privacy module checks) is only ever
  set in a child, never here.
- The watchlist goes to the children through a pipe (``Watchlist.to_blobs``), never through
  a file: enrolled faces are biometric data too.
- The node is timed through its own counters (``NodeStats.stage_s``) plus a per-frame
  callback, so the numbers are those of ``edge run``'s code path, not of a re-implementation.
- Everything written to ``--out`` is counts and timings: no pixels, crops, embeddings or
  landmarks of anyone.

Modules: :mod:`~edge.lab.bench.run` (the whole benchmark, in order), ``sources`` (video
files as frame sources), ``watchlists`` (who is enrolled), ``jobs`` (what a child is asked),
``children`` (the child-process protocol), ``node_child`` / ``peer_naive`` /
``peer_face_recognition`` (what a child measures), ``measure`` (timers and percentiles),
``summary`` (goals and ratios), ``report`` and ``plots`` (files written).

This package deliberately imports nothing here: a child process loads only the modules of
the system it measures.
"""
