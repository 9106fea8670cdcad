"""The console policy: TensorFlow's native start-up noise filtered at fd 2, progress only on
a terminal and never under --quiet."""

from __future__ import annotations

import subprocess
import sys
import time

from core import console
from core.paths import REPO_ROOT

FILTERED_RUN = r"""
import os, sys
from core.console import NativeNoiseFilter
noise = NativeNoiseFilter().start()
import tensorflow as tf
tf.constant(1.0) + 1.0
os.write(2, b"E0000 00:00:1796036733.251350   23104 cuda_platform.cc:52] failed call to cuInit\n")
os.write(2, b"E0000 00:00:1796036733.251350   23104 saver.cc:10] a real native error\n")
print("a real python warning", file=sys.stderr, flush=True)
os.write(2, b"\rbar 50%")
os.write(2, b"\rbar 100%\n")
noise.stop()
print("after stop", file=sys.stderr)
"""


def test_native_noise_is_dropped_and_everything_else_passes() -> None:
    result = subprocess.run(
        [sys.executable, "-c", FILTERED_RUN],
        capture_output=True,
        timeout=300,
        cwd=REPO_ROOT,
    )
    err = result.stderr.decode()  # bytes: text mode would turn the bar's \r into \n
    assert result.returncode == 0, err
    for noise in ("oneDNN", "cuda drivers", "cuInit", "absl::InitializeLog", "cpu_feature"):
        assert noise not in err, err
    assert "a real native error" in err and "a real python warning" in err
    assert "\rbar 50%\rbar 100%\n" in err and err.endswith("after stop\n")


def test_is_noise_keeps_real_errors() -> None:
    assert console.is_noise(b"I0000 00:00:17.5   1 port.cc:153] oneDNN custom operations")
    assert console.is_noise(b"W0000 00:00:17.5   1 x.cc:1] anything at warning level")
    assert console.is_noise(b"E0000 00:00:17.5   1 cuda_dnn.cc:8] Unable to register cuDNN")
    assert not console.is_noise(b"E0000 00:00:17.5   1 saver.cc:1] checkpoint not found")
    assert not console.is_noise(b"housing: error: --epochs must be positive")


def test_progress_only_on_a_terminal_and_not_when_quiet(monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    console.configure(quiet=False)
    try:
        assert console.progress_enabled()
        with console.heartbeat("vertex deploy", every_seconds=0.05):
            time.sleep(0.2)
        assert "vertex deploy: still running (0m00s)" in capsys.readouterr().err
        shown = console.bar(total=3)
        assert not shown.disable
        shown.close()
        capsys.readouterr()
        console.configure(quiet=True)
        assert not console.progress_enabled() and console.bar(range(3)).disable
        with console.heartbeat("vertex deploy", every_seconds=0.05):
            time.sleep(0.2)
        assert capsys.readouterr().err == ""
    finally:
        console.configure(quiet=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert not console.progress_enabled()  # logs redirected to a file get no bars
