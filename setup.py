"""Generate the TF Serving protocol modules whenever the project is built or installed.

The ``*_pb2`` modules under ``core/tfserving_protos`` are not committed: this ``build_py``
runs ``core/tfserving_protos/regenerate.py`` (grpcio-tools is a build requirement in
pyproject.toml). It writes them into the source tree, which the project runs from
(``pip install -e .``, and the Docker images copy ``core/`` from their build stage), and,
for a wheel (``pip install .``), into the wheel too. Everything else is in pyproject.toml.
"""

from __future__ import annotations

import runpy
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

REGENERATE = Path(__file__).resolve().parent / "core" / "tfserving_protos" / "regenerate.py"


class BuildPyWithProtos(build_py):
    def run(self) -> None:
        # run_path, not an import: the project is not importable in pip's build environment.
        regenerate = runpy.run_path(str(REGENERATE))
        if regenerate["main"]([]) != 0:
            raise SystemExit("generating core/tfserving_protos failed")
        super().run()
        if not self.editable_mode:
            package = Path(self.build_lib, "core", "tfserving_protos")
            regenerate["install"](regenerate["HERE"], package)


setup(cmdclass={"build_py": BuildPyWithProtos})
