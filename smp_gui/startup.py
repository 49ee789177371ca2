"""What `smp-gui` checks before Qt starts, and the Qt messages it keeps from the user.

Without a display Qt's xcb platform aborts the process (exit 134) after lines of its own;
with a display but without the xcb plugin's system libraries it aborts naming one library
(sometimes the wrong one), and so it does when no X server answers on the display.
`choose_platform` decides first: a headless run (screenshot or exports) uses Qt's offscreen
platform, an interactive one gets one line saying what to do.
"""
from __future__ import annotations

import ctypes
import os
from collections.abc import Callable, Mapping, MutableMapping
from importlib.resources import files

__all__ = ["NO_DISPLAY_MESSAGE", "OFFSCREEN_NOISE", "StartupError", "choose_platform",
           "install_message_filter", "missing_xcb_packages", "x11_problem", "x_display_opens",
           "xcb_libraries"]

NO_DISPLAY_MESSAGE = (
    "no display to open the window on (neither DISPLAY nor WAYLAND_DISPLAY is set): run it "
    "on a desktop, or start it with `./dev app` (a screenshot when there is no display), or "
    "use the headless options --screenshot PATH / --export-table / --export-figure / "
    "--export-cubes")
# What Qt's offscreen platform says about every top-level window: it cannot honour size
# hints of windows it does not show; nothing the user can act on.
OFFSCREEN_NOISE = ("This plugin does not support propagateSizeHints()",)


class StartupError(Exception):
    """The window cannot start here; the message is one line for the user."""


def xcb_libraries() -> list[tuple[str, str]]:
    """(Debian package, shared library) pairs the xcb plugin needs beyond the offscreen
    platform: the list `./dev app` installs (``resources/qt_xcb_libraries.txt``)."""
    text = files("smp_model.resources").joinpath("qt_xcb_libraries.txt").read_text()
    rows = [line.split() for line in text.splitlines() if line and not line.startswith("#")]
    return [(package, library) for package, library in rows]


def _loads(library: str) -> bool:
    try:
        ctypes.CDLL(library)
    except OSError:
        return False
    return True


def missing_xcb_packages(loads: Callable[[str], bool] = _loads) -> list[str]:
    """The Debian packages whose library of `xcb_libraries` the dynamic loader cannot load.

    Parameters
    ----------
    loads : callable
        ``loads(soname)`` is True when the library loads (default: `ctypes.CDLL`).

    Returns
    -------
    list of str
        Package names, in the list's order; empty when the xcb plugin can load.
    """
    return [package for package, library in xcb_libraries() if not loads(library)]


def choose_platform(headless: bool, environ: MutableMapping[str, str] | None = None) -> None:
    """Set ``QT_QPA_PLATFORM`` for a run without a display, or refuse to start.

    Call before the QApplication exists.  A platform the user chose is kept.

    Parameters
    ----------
    headless : bool
        The run saves a screenshot or exports and shows no window to anyone.
    environ : mapping, optional
        The environment to read and change; default ``os.environ``.

    Raises
    ------
    StartupError
        An interactive run without a display, with a display no X server answers on, or
        with a display but without the xcb plugin's system libraries (naming the Debian
        packages and the command that installs them).  A headless run uses the offscreen
        platform in all these cases.
    """
    env = os.environ if environ is None else environ
    if env.get("QT_QPA_PLATFORM"):
        return
    if not _has_display(env):
        if not headless:
            raise StartupError(NO_DISPLAY_MESSAGE)
        env["QT_QPA_PLATFORM"] = "offscreen"
        return
    if env.get("DISPLAY") and not env.get("WAYLAND_DISPLAY"):
        problem = x11_problem(env["DISPLAY"])
        if problem and headless:
            env["QT_QPA_PLATFORM"] = "offscreen"   # nothing is shown: no need of the display
        elif problem:
            raise StartupError(problem)


def x11_problem(display: str, loads: Callable[[str], bool] = _loads,
                opens: Callable[[str], bool] | None = None) -> str | None:
    """Why Qt's xcb platform cannot show a window on the X display ``display``, in one
    line for the user, or None.  Qt itself aborts in both cases (exit 134).

    Parameters
    ----------
    display : str
        The ``DISPLAY`` value (``":0"``, ``"host:10.0"``).
    loads : callable
        As for `missing_xcb_packages`.
    opens : callable, optional
        ``opens(display)`` is True when an X server answers there (default: a connection
        through libxcb, `x_display_opens`).
    """
    missing = missing_xcb_packages(loads)
    if missing:
        return ("Qt's xcb platform cannot load: missing system libraries; install them with "
                f"`apt-get install {' '.join(missing)}` (as root), or run `./dev app`, which "
                "does")
    if not (opens or x_display_opens)(display):
        return (f"cannot open the display DISPLAY={display!r} (no X server answers there, or "
                "it refuses this user): start the X server or correct DISPLAY, or unset it "
                "and use the headless options --screenshot PATH / --export-table / "
                "--export-figure / --export-cubes")
    return None


def x_display_opens(display: str) -> bool:
    """Whether an X server accepts a connection on ``display``, asked through libxcb (as
    Qt's xcb platform will connect); True when libxcb cannot be loaded, which
    `missing_xcb_packages` reports instead."""
    try:
        xcb = ctypes.CDLL("libxcb.so.1")
    except OSError:
        return True
    xcb.xcb_connect.restype = ctypes.c_void_p
    xcb.xcb_connect.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    xcb.xcb_connection_has_error.argtypes = [ctypes.c_void_p]
    xcb.xcb_disconnect.argtypes = [ctypes.c_void_p]
    connection = xcb.xcb_connect(display.encode(), None)
    try:
        return xcb.xcb_connection_has_error(connection) == 0
    finally:
        xcb.xcb_disconnect(connection)   # also frees a connection in the error state


def _has_display(env: Mapping[str, str]) -> bool:
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


def install_message_filter() -> None:
    """Drop Qt's known offscreen-platform noise (`OFFSCREEN_NOISE`); every other Qt message
    goes to the handler that was installed before (Qt's own: stderr)."""
    from PyQt6.QtCore import qInstallMessageHandler

    previous = None

    def handler(kind, context, message: str):
        if message in OFFSCREEN_NOISE:
            return
        if previous is not None:
            previous(kind, context, message)
        else:
            os.write(2, (message + "\n").encode())

    previous = qInstallMessageHandler(handler)
