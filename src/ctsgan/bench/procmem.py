"""This process's memory as the Linux kernel counts it (``/proc/self/status``), for the benchmarks.

``ctsgan bench memory`` measures a training step's peak in a fresh subprocess: peak RSS
(``VmHWM``) reset just before the models are built (:func:`reset_peak_rss`), address space
(``VmSize``) for its ``RLIMIT_AS`` limit; ``ctsgan bench generate`` reports the same peak.
"""

from __future__ import annotations


def proc_status_bytes(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``, ``VmSize``) in bytes."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def peak_rss_bytes() -> int:
    """This process's peak RSS: the kernel's high-water mark ``VmHWM``.

    ``getrusage(RUSAGE_SELF).ru_maxrss`` reads the same counter but also keeps the peak of the
    memory image the process replaced at ``exec``. A subprocess started with vfork / posix_spawn
    (Python's default) thus inherits its PARENT's peak (e.g. a large pytest process), which no
    reset removes. ``VmHWM`` is this process's own and is what ``/proc/self/clear_refs`` resets.
    """
    try:
        return proc_status_bytes("VmHWM")
    except OSError:  # no /proc (macOS): the getrusage peak (bytes there), inherited peak and all
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def reset_peak_rss() -> bool:
    """Give freed heap back to the OS, then reset the peak RSS to the current RSS; True if it was reset."""
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset the process's peak RSS (VmHWM / ru_maxrss) to its current RSS
        return True
    except OSError:
        return False


def address_space_bytes() -> int:
    """Current virtual size (VmSize) of this process."""
    return proc_status_bytes("VmSize")
