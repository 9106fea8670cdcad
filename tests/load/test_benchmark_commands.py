"""Every benchmark command still starts: imports resolve and ``--help`` answers.

The benchmarks are run by hand (their figures live in the README), so nothing else would
notice a rename that breaks one (``bench_model_call`` imported a constant that was gone).
"""

from __future__ import annotations

import importlib
import sys

import pytest

COMMANDS = [
    "load_tests.bench_batch_score",
    "load_tests.bench_gateway",
    "load_tests.bench_gateway_worker",
    "load_tests.bench_model_call",
    "load_tests.bench_model_server",
    "load_tests.bench_prediction_log",
    "load_tests.peers.bench_peers",
]


@pytest.mark.parametrize("name", COMMANDS)
def test_benchmark_command_answers_help(name, monkeypatch, capsys):
    module = importlib.import_module(name)
    monkeypatch.setattr(sys, "argv", [name, "--help"])
    with pytest.raises(SystemExit) as stopped:
        module.main()
    assert stopped.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_every_benchmark_script_is_listed():
    from core.paths import REPO_ROOT

    found = {
        ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
        for pattern in ("load_tests/bench_*.py", "load_tests/peers/bench_*.py")
        for path in REPO_ROOT.glob(pattern)
    }
    assert found == set(COMMANDS)
