"""Where the operator's memory goes, on request: an opt-in tracemalloc.

With `SHADOWROUTE_TRACEMALLOC=1` (or a number of frames, 1..25, kept per allocation)
the process starts tracemalloc before it imports kopf, aiohttp and the
models, so their allocations are counted too; `/debug/memory` on the metrics port then
answers the top allocation sites as text (`report`). Off by default: tracing costs
memory (its own bookkeeping, shown in the report) and time on every allocation.
"""

from __future__ import annotations

import functools
import tracemalloc
from collections.abc import Mapping
from typing import Any

ENV = "SHADOWROUTE_TRACEMALLOC"
MAX_FRAMES = 25
GROUPINGS = ("file", "package", "line", "traceback")
MIB = 1024 * 1024


def frames_from_env(environ: Mapping[str, str]) -> int:
    """The frames to keep per allocation (0: off) that $SHADOWROUTE_TRACEMALLOC asks."""
    value = environ.get(ENV, "").strip()
    if value in ("", "0"):
        return 0
    if not value.isdigit() or not 1 <= int(value) <= MAX_FRAMES:
        raise ValueError(
            f"{ENV}={value!r}: expected 0 (off), 1 (on) or a number of frames up to {MAX_FRAMES}"
        )
    return int(value)


def start_from_env(environ: Mapping[str, str]) -> bool:
    """Start tracemalloc if $SHADOWROUTE_TRACEMALLOC asks; whether it traces now."""
    frames = frames_from_env(environ)
    if frames and not tracemalloc.is_tracing():
        tracemalloc.start(frames)
    return tracemalloc.is_tracing()


def package_of(filename: str) -> str:
    """The top-level package (or module) a source file belongs to: the first part
    after site-packages/, `shadowroute` for ours, the file's name for the standard
    library, `<frozen ...>` and other pseudo-files as they are."""
    if filename.startswith("<"):
        return filename
    parts = filename.replace("\\", "/").split("/")
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            rest = parts[parts.index(marker) + 1 :]
            return _module(rest[0]) if rest else filename
    if "shadowroute" in parts:
        return "shadowroute"
    return f"stdlib:{_module(parts[-1])}"


def short_path(filename: str) -> str:
    """A file's path from its package on (site-packages/… and the repository cut off)."""
    parts = filename.replace("\\", "/").split("/")
    for marker in ("site-packages", "dist-packages", "operator"):
        if marker in parts:
            return "/".join(parts[parts.index(marker) + 1 :])
    return filename


def _stack(traceback: tracemalloc.Traceback) -> str:
    """An allocation's stack, the allocating line first, each frame file:line, on one
    line: which caller keeps what a library allocated (json.loads' objects, say)."""
    return " < ".join(f"{short_path(f.filename)}:{f.lineno}" for f in reversed(traceback))


def _module(name: str) -> str:
    return name[:-3] if name.endswith(".py") else name


def report(top: int = 15, by: str = "file") -> str:
    """The `top` allocation sites of the live heap, grouped by source file, top-level
    package, line, or whole stack (as deep as the frames kept: SHADOWROUTE_TRACEMALLOC),
    with the totals and tracemalloc's own overhead. Raises
    LookupError when tracemalloc is off, ValueError for a bad grouping."""
    if by not in GROUPINGS:
        raise ValueError(f"by={by!r}: expected one of {', '.join(GROUPINGS)}")
    if not tracemalloc.is_tracing():
        raise LookupError(f"tracemalloc is off: start the operator with {ENV}=1")
    snapshot = tracemalloc.take_snapshot().filter_traces(
        (tracemalloc.Filter(False, tracemalloc.__file__),)
    )
    current, peak = tracemalloc.get_traced_memory()
    kinds = {"line": "lineno", "traceback": "traceback"}
    stats = snapshot.statistics(kinds.get(by, "filename"))
    rows: dict[str, list[int]] = {}
    for stat in stats:
        frame = stat.traceback[0]
        if by == "traceback":
            key = _stack(stat.traceback)
        elif by == "package":
            key = package_of(frame.filename)
        elif by == "line":
            key = f"{short_path(frame.filename)}:{frame.lineno}"
        else:
            key = short_path(frame.filename)
        size_count = rows.setdefault(key, [0, 0])
        size_count[0] += stat.size
        size_count[1] += stat.count
    ordered = sorted(rows.items(), key=lambda kv: kv[1][0], reverse=True)
    lines = [
        f"tracemalloc: traced {current / MIB:.1f} MiB now (peak {peak / MIB:.1f} MiB); "
        f"its own bookkeeping {tracemalloc.get_tracemalloc_memory() / MIB:.1f} MiB; "
        f"{tracemalloc.get_traceback_limit()} frame(s) per allocation",
        f"top {min(top, len(ordered))} of {len(ordered)} by {by} (MiB, blocks, site):",
    ]
    for key, (size, count) in ordered[:top]:
        lines.append(f"{size / MIB:9.2f} {count:9d}  {key}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- glibc's heap

TRIM_EVERY_SECONDS = 30.0


@functools.cache
def _glibc() -> Any:
    """glibc itself, or None (musl, macOS): mallopt and malloc_trim are glibc's."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") else None


M_ARENA_MAX = -8  # mallopt's parameter, from glibc's malloc.h
ARENAS = 2


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Before any thread starts: glibc gives each thread that allocates a heap arena of
    its own (up to 8 per core), and memory freed in one is not reused by another. The
    API client's worker threads (kube/client.WORKERS) decode the answers the event
    loop's thread then keeps or drops: two arenas serve them with less memory held
    (measured: 90 -> 87 MiB at rest with 100 routes). Whether glibc took it."""
    libc = _glibc()
    return bool(libc and hasattr(libc, "mallopt") and libc.mallopt(M_ARENA_MAX, arenas))


def trim() -> bool:
    """Give the heap's free pages back to the system (glibc's malloc_trim): after a
    burst (a start over many routes, a re-list, a GitOps sync) the memory freed stays
    resident otherwise (measured: 94 -> 90 MiB at rest with 100 routes). Whether any
    was given back."""
    libc = _glibc()
    return bool(libc and libc.malloc_trim(0))
