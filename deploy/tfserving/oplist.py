"""Does a SavedModel only use ops and attributes the serving runtime's TensorFlow knows?

A SavedModel written by a newer TensorFlow can name an op, or an attribute of a known
op, that an older runtime's op registry lacks; the server then refuses to load it
("Op type not registered", "NodeDef mentions attr ... not in Op"). This module records
the op registry of the pinned TensorFlow (``ops-<minor>.json`` next to it) and compares a
SavedModel's graph — the meta graph and every function in its library — with it.

    python -m deploy.tfserving.oplist record          # in an environment with the pinned TF
    python -m deploy.tfserving.oplist check models/housing_keras/1

Limits: the registry is pip TensorFlow's, the library TF Serving of the same release is
built from; kernels for a device and attribute *values* are not compared, and ops that
TF Serving adds or leaves out of its build are not seen.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from deploy.tfserving.runtime import TENSORFLOW_MINOR

HERE = Path(__file__).resolve().parent


def ops_file(minor: str = TENSORFLOW_MINOR) -> Path:
    return HERE / f"ops-{minor}.json"


def registry_ops() -> dict[str, list[str]]:
    """Op name -> attribute names, from this process's TensorFlow op registry."""
    from tensorflow.core.framework import op_def_pb2
    from tensorflow.python.client import pywrap_tf_session

    buffer = pywrap_tf_session.TF_GetAllOpList()
    ops = op_def_pb2.OpList()
    ops.ParseFromString(pywrap_tf_session.TF_GetBuffer(buffer))
    return {op.name: sorted(attr.name for attr in op.attr) for op in ops.op}


def record(path: Path | None = None) -> Path:
    """Write the registry of the installed TensorFlow, which must be the pinned minor."""
    import tensorflow as tf

    minor = ".".join(tf.__version__.split(".")[:2])
    if minor != TENSORFLOW_MINOR:
        raise SystemExit(f"TensorFlow {tf.__version__} is installed, not {TENSORFLOW_MINOR}")
    path = path or ops_file(minor)
    payload = {"tensorflow": tf.__version__, "ops": registry_ops()}
    path.write_text(json.dumps(payload, indent=0, sort_keys=True) + "\n")
    return path


def load_recorded(path: Path | None = None) -> dict[str, set[str]]:
    payload = json.loads((path or ops_file()).read_text())
    return {name: set(attrs) for name, attrs in payload["ops"].items()}


def saved_model_ops(directory: Path) -> tuple[dict[str, set[str]], set[str]]:
    """(op name -> attribute names set on its nodes, the graph's own function names),
    over the meta graphs and every function in their libraries."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((directory / "saved_model.pb").read_bytes())
    used: dict[str, set[str]] = {}
    functions: set[str] = set()
    for meta in saved.meta_graphs:
        nodes = [*meta.graph_def.node]
        for function in meta.graph_def.library.function:
            functions.add(function.signature.name)
            nodes.extend(function.node_def)
        for node in nodes:
            # Attributes starting with "_" are the runtime's own annotations, not op attributes.
            used.setdefault(node.op, set()).update(a for a in node.attr if not a.startswith("_"))
    return used, functions


def incompatibilities(
    used: dict[str, set[str]], known: dict[str, set[str]], functions: set[str]
) -> list[str]:
    """What the runtime would reject: unknown ops and unknown attributes of known ops.

    ``functions`` are the graph's own functions, which nodes call like ops."""
    problems = []
    for op in sorted(set(used) - functions):
        if op not in known:
            problems.append(f"op {op} is not registered")
            continue
        unknown = sorted(used[op] - known[op])
        problems += [f"op {op}: attribute {attr} is unknown" for attr in unknown]
    return problems


def check(directory: Path, recorded: Path | None = None) -> list[str]:
    """The problems a runtime of the pinned version would have loading ``directory``."""
    used, functions = saved_model_ops(directory)
    return incompatibilities(used, load_recorded(recorded), functions)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.tfserving.oplist", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("record", help="write ops-<minor>.json from the installed TensorFlow")
    checker = commands.add_parser("check", help="list what the pinned runtime would reject")
    checker.add_argument("saved_model", type=Path)
    args = parser.parse_args(argv)
    if args.command == "record":
        print(record())
        return 0
    problems = check(args.saved_model)
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problem(s) against TensorFlow {TENSORFLOW_MINOR}'s op registry")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
