"""A guard against a dangling alternate signal stack left by OpenVINO's CPU plugin (Linux).

Each OpenVINO CPU plugin instance (one per ``openvino.Core`` that compiles for the CPU) maps an
alternate signal stack for the thread that creates it and installs it with ``sigaltstack``, keeping
the stack that was installed before; when the instance is destroyed it restores that previous stack
if its own is still the current one, and unmaps its own either way (``SigAltStackSetup`` in
``src/plugins/intel_cpu/src/plugin.cpp``, added for AMX in openvinotoolkit/openvino#11894). Two
instances destroyed in the order they were created leave the second one's *previous* stack, the
first one's unmapped memory, installed. Python installs its signal handlers with ``SA_ONSTACK``, so
the next Ctrl-C, SIGTERM or SIGHUP the thread takes makes the kernel write the signal frame into
unmapped memory: the process dies of SIGSEGV instead of stopping cleanly.

:func:`clear_dangling_altstack` disables the calling thread's alternate stack when its memory is no
longer mapped. The library calls it before each run (:func:`mot_dinov3.pipeline.frames`), after
:func:`mot_dinov3.track` and :func:`mot_dinov3.iter_track` (where their models are released), and the
CLI before it installs its signal handlers.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import sys

SS_DISABLE = 2  # <signal.h>
MS_ASYNC = 1  # <sys/mman.h>


class _Stack(ctypes.Structure):
    """``stack_t`` of Linux (x86-64, aarch64): base, flags, size."""

    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


def clear_dangling_altstack() -> bool:
    """Disable the calling thread's alternate signal stack if it points at unmapped memory.

    Returns:
        True when a dangling stack was disabled; False when there was none, it is mapped, or the
        platform is not Linux. Never raises.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        current = _Stack()
        if libc.sigaltstack(None, ctypes.byref(current)) != 0 or current.ss_flags & SS_DISABLE or not current.ss_sp:
            return False
        start = current.ss_sp & ~(mmap.PAGESIZE - 1)  # msync wants a page-aligned address
        length = ctypes.c_size_t(current.ss_sp + current.ss_size - start)
        if libc.msync(ctypes.c_void_p(start), length, MS_ASYNC) == 0 or ctypes.get_errno() != errno.ENOMEM:
            return False  # mapped (ENOMEM: some of the range is not)
        return libc.sigaltstack(ctypes.byref(_Stack(None, SS_DISABLE, 0)), None) == 0
    except (OSError, AttributeError):  # no libc symbols: nothing to guard
        return False
