"""Starting `smp-gui` where there is no display, no xcb libraries or no such file: one line
that says what is wrong and what to do, before Qt has a say (it aborted with exit 134)."""

import os
import subprocess
import sys

from astropy.table import Table

from smp_gui.startup import xcb_libraries

NOISE = "propagateSizeHints"


# After a test's changes to the process: smp-gui's main() as a user starts it, no arguments.
START_THE_WINDOW = "from smp_gui.app import main\nsys.exit(main([]))\n"


def _run(args, tmp_path, cwd, **env_changes):
    """``python -m smp_gui.app ARGS`` as a user starts it, without a display unless given;
    settings kept out of the user's."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["XDG_CONFIG_HOME"] = str(tmp_path)
    env.update(env_changes)
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env)


def _export_with_preload_hook(hook: str, out, tmp_path, cwd):
    """``smp-gui --export-table OUT`` started as a user starts it (main()), with ``hook``
    (lines of a function body, indented by 4, that see ``sys`` and ``QApplication``) run
    when the engine's preload begins, before the real preload."""
    script = tmp_path / "start.py"
    script.write_text("import sys\n"
                      "import smp_gui.controller as controller\n"
                      "from PyQt6.QtWidgets import QApplication\n"
                      "real = controller.preload_engine\n"
                      "def preload(*args):\n"
                      + hook +
                      "    real(*args)\n"
                      "controller.preload_engine = preload\n"
                      "from smp_gui.app import main\n"
                      "if __name__ == '__main__':\n"
                      "    sys.exit(main(['--export-table', sys.argv[1]]))\n")
    return _run([str(script), str(out)], tmp_path, cwd)


def test_interactive_start_without_display_says_what_to_do(tmp_path, repo_root):
    run = _run(["-m", "smp_gui.app"], tmp_path, repo_root)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert "no display" in lines[0] and "./dev app" in lines[0]
    assert "--screenshot" in lines[0] and "--export-table" in lines[0]


def test_headless_export_without_display_runs_offscreen_quietly(tmp_path, repo_root):
    out = tmp_path / "demo.ecsv"
    run = _run(["-m", "smp_gui.app", "--export-table", str(out)], tmp_path, repo_root)
    assert run.returncode == 0, run.stderr
    table = Table.read(out)
    assert list(table["name"]) == ["demo-binary"]
    assert table["flux"][0] > 0 and 0 < table["flux_err"][0] < table["flux"][0]
    assert NOISE not in run.stderr
    assert run.stderr.strip().splitlines()[-1] == f"smp-gui: wrote {out}"


def test_missing_detection_is_one_line_naming_it(tmp_path, repo_root):
    missing = tmp_path / "no" / "such" / "detection.toml"
    run = _run(["-m", "smp_gui.app", str(missing), "--export-table", str(tmp_path / "x.ecsv")],
               tmp_path, repo_root, QT_QPA_PLATFORM="offscreen")
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        f"smp-gui: error: {missing}: no such file or folder"]
    assert not (tmp_path / "x.ecsv").exists()


def test_bad_detection_error_comes_alone_and_names_the_file(tmp_path, repo_root):
    bad = tmp_path / "detection.toml"
    bad.write_text("exposures = [\n")
    run = _run(["-m", "smp_gui.app", str(bad), "--export-table", str(tmp_path / "x.ecsv")],
               tmp_path, repo_root, QT_QPA_PLATFORM="offscreen")
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert str(bad) in lines[0] and "TOML" in lines[0]


def test_display_without_xcb_libraries_names_the_packages(tmp_path, repo_root):
    # The user's start-up (main()) runs with the loader refusing two of the libraries, as
    # on a venv set up headless, and loading the others (whether this machine has them or
    # not: `./dev test` does not install them).
    refused = {"libxcb-cursor.so.0", "libxkbcommon-x11.so.0"}
    listed = {library for package, library in xcb_libraries()}
    code = ("import ctypes, sys\n"
            "real = ctypes.CDLL\n"
            "def cdll(name, *a, **k):\n"
            f"    if name in {refused!r}: raise OSError(name + ': cannot open shared object')\n"
            f"    if name in {sorted(listed)!r}: return None\n"
            "    return real(name, *a, **k)\n"
            "ctypes.CDLL = cdll\n" + START_THE_WINDOW)
    run = _run(["-c", code], tmp_path, repo_root, DISPLAY=":987")
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    packages = [package for package, library in xcb_libraries() if library in refused]
    assert packages == ["libxcb-cursor0", "libxkbcommon-x11-0"]
    assert f"apt-get install {' '.join(packages)}" in lines[0] and "./dev app" in lines[0]


def test_display_no_server_answers_on_says_so(tmp_path, repo_root):
    # DISPLAY set, libraries present (as after `./dev app`), but no X server at :987: Qt
    # aborted with "could not connect to display" and a core dump.
    code = ("import sys, smp_gui.startup as startup\n"
            "startup.missing_xcb_packages = lambda loads=None: []\n" + START_THE_WINDOW)
    run = _run(["-c", code], tmp_path, repo_root, DISPLAY=":987")
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert "DISPLAY=':987'" in lines[0] and "no X server answers" in lines[0]
    assert "--screenshot" in lines[0]


def test_headless_export_with_an_unusable_display_runs_offscreen(tmp_path, repo_root):
    out = tmp_path / "demo.ecsv"
    run = _run(["-m", "smp_gui.app", "--export-table", str(out)], tmp_path, repo_root,
               DISPLAY=":987")
    assert run.returncode == 0, run.stderr
    assert list(Table.read(out)["name"]) == ["demo-binary"]
    assert run.stderr.strip().splitlines()[-1] == f"smp-gui: wrote {out}"


def test_settings_of_a_run_are_kept_after_it_exits(tmp_path, repo_root):
    # `smp-gui` ends without Python's clean-up of Qt (which crashed now and then at exit),
    # so the settings Qt writes lazily must be written before: the export folder is one.
    folder = tmp_path / "exports"
    folder.mkdir()
    run = _run(["-m", "smp_gui.app", "--export-table", str(folder / "t.ecsv")], tmp_path,
               repo_root, QT_QPA_PLATFORM="offscreen")
    assert run.returncode == 0, run.stderr
    stored = (tmp_path / "smp-inspector" / "SMP Inspector.conf").read_text()
    assert f"export_dir={folder}" in stored


def test_qt_messages_other_than_the_offscreen_noise_are_passed_on(tmp_path, repo_root):
    code = ("from PyQt6.QtCore import qWarning\n"
            "from smp_gui.startup import install_message_filter\n"
            "install_message_filter()\n"
            "qWarning(b'This plugin does not support propagateSizeHints()')\n"
            "qWarning(b'something else')\n")
    run = _run(["-c", code], tmp_path, repo_root)
    assert run.returncode == 0, run.stderr
    assert run.stderr.strip().splitlines() == ["something else"]


def test_the_window_shows_before_the_engine_starts(tmp_path, repo_root):
    # The user's start-up (main()), with the engine's preload recording what was on screen
    # when it began: it takes seconds, and the window used to appear only after it.
    out = tmp_path / "demo.ecsv"
    run = _export_with_preload_hook(
        "    shown = [w for w in QApplication.topLevelWidgets()\n"
        "             if w.isVisible() and hasattr(w, 'statusBar')]\n"
        "    print('shown:', [w.statusBar().currentMessage() for w in shown],\n"
        "          file=sys.stderr)\n", out, tmp_path, repo_root)
    assert run.returncode == 0, run.stderr
    assert "shown: ['Starting the engine…']" in run.stderr.splitlines()
    assert len(Table.read(out)) == 1


def test_start_up_shows_its_stages_in_the_status_bar_until_the_first_fit(tmp_path, repo_root):
    # The user's start-up (main()), recording every status-bar message and progress-bar
    # value from the moment the window is on screen to the first fit shown.
    run = _export_with_preload_hook(
        "    seen = []\n"
        "    w = next(w for w in QApplication.topLevelWidgets()\n"
        "             if w.isVisible() and hasattr(w, 'progress_bar'))\n"
        "    w.statusBar().messageChanged.connect(\n"
        "        lambda m: m and seen.append(('message', m)))\n"
        "    w.progress_bar.valueChanged.connect(\n"
        "        lambda v: w.progress_bar.isVisible() and seen.append(('bar', v)))\n"
        "    w.fitDisplayed.connect(lambda _: print('SEEN', repr(seen), file=sys.stderr))\n",
        tmp_path / "demo.ecsv", tmp_path, repo_root)
    assert run.returncode == 0, run.stderr
    line = next(line for line in run.stderr.splitlines() if line.startswith("SEEN "))
    seen = eval(line[len("SEEN "):])    # noqa: S307 - our own repr of str/int tuples
    messages = [m for kind, m in seen if kind == "message"]
    stages = ["process server", "GalSim", "Piff", "Engine ready", "reading 6 exposures"]
    at = [next(n for n, m in enumerate(messages) if stage in m) for stage in stages]
    assert at == sorted(at), messages
    # the bar went through the preload's stages, then the detection's reading
    values = [v for kind, v in seen if kind == "bar"]
    assert len(set(values)) >= 4, seen
    assert messages[-1].endswith("fitted"), messages
