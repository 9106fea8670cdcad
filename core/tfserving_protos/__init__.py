"""TF Serving's protocol (messages and gRPC stubs) without importing TensorFlow.

The gateway and batch scoring need the protocol's messages, not TensorFlow: importing
``tensorflow_serving.apis`` loads all of TensorFlow (seconds and hundreds of MB per process).
These modules are generated with grpcio-tools from ``third_party/`` by ``regenerate.py``
when the project is installed (``setup.py``), not committed; ``python -m
core.tfserving_protos.regenerate --check`` (run by the tests) fails when they are missing or
no longer match the protos.

Why generated here rather than a PyPI package: none that ships these protos without
TensorFlow is current (``tensorflow-protobuf`` stops at TF 2.11, ``min-tfs-client`` at 2020),
and an old copy would clash with TensorFlow's own modules (below).

Why the real file names and packages: TensorFlow's modules and these register the same
``.proto`` files in protobuf's one default descriptor pool, and the same process may import
both (the model server, the tests). ``third_party/`` holds TensorFlow's and TF Serving's
``.proto`` files as written from the descriptors TensorFlow registers (``regenerate.py
--refresh-protos``; theirs, never edited by hand), so both sides add byte-identical serialized
files: whichever is imported first registers them and the other reuses them (same
descriptors, even the same message classes). A test checks the bytes are identical to
TensorFlow's and imports both in either order.

Import paths mirror the proto paths under this package, e.g.
``core.tfserving_protos.tensorflow_serving.apis.predict_pb2``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType


class _NotGenerated:
    """Last on ``sys.meta_path``: a generated root package nobody found was never generated."""

    @staticmethod
    def find_spec(
        name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        package, _, root = name.rpartition(".")
        if package != __name__:
            return None
        from core.tfserving_protos.regenerate import OWN_ROOTS

        if root in OWN_ROOTS:
            raise ModuleNotFoundError(
                f"{name} is generated when the project is installed: run `make install` "
                f"(or `python -m {__name__}.regenerate`)",
                name=name,
            )
        return None


sys.meta_path.append(_NotGenerated())
