"""Generate the TF Serving protocol modules from ``third_party/``.

``python -m core.tfserving_protos.regenerate`` runs grpcio-tools' ``protoc`` on every
``.proto`` file under ``third_party/`` and writes ``*_pb2.py``, ``*_pb2.pyi`` and ``*_pb2_grpc.py``
next to this file, with the imports moved under ``core.tfserving_protos`` (the real
``tensorflow`` package must never be imported by them). The modules are not committed:
installing the project (``make install``, any ``pip install``) runs this through
``setup.py``. ``--check`` only compares: it fails when they are missing or stale.

``--refresh-protos`` (needs TensorFlow and tensorflow-serving-api installed) only rewrites
``third_party/`` from the descriptors that TensorFlow's own modules register: run it after a
TensorFlow upgrade changes the protocol, then run the script again without flags. The
``.proto`` text it prints is the protocol's definition (messages, fields, numbers, options),
comments aside.

This file imports nothing of the project: ``setup.py`` runs it in pip's build environment,
where the project is not importable.
"""

from __future__ import annotations

import argparse
import importlib
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PACKAGE = "core.tfserving_protos"
HERE = Path(__file__).resolve().parent
# TensorFlow's and TF Serving's protocol, as TensorFlow registers it: theirs, never edited here.
PROTO_DIR = HERE / "third_party"
# Top-level proto packages whose Python modules live under this package.
OWN_ROOTS = ("tensorflow", "tensorflow_serving", "xla")
# The services and configs the project speaks; ``--refresh-protos`` takes their closure.
ROOT_MODULES = (
    "tensorflow_serving.apis.prediction_service_pb2",
    "tensorflow_serving.apis.model_service_pb2",
    "tensorflow_serving.config.model_server_config_pb2",
)
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def proto_files() -> list[str]:
    return sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))


def rewrite(text: str) -> str:
    """Point generated imports and module names at this package instead of TensorFlow's."""
    roots = "|".join(OWN_ROOTS)
    text = re.sub(
        rf"^(\s*)from ({roots})((?:\.\w+)*) import ",
        rf"\1from {PACKAGE}.\2\3 import ",
        text,
        flags=re.M,
    )
    text = re.sub(rf"^import ({roots})\.", rf"import {PACKAGE}.\1.", text, flags=re.M)
    return re.sub(
        rf"(BuildTopDescriptorsAndMessages\(DESCRIPTOR, ')(({roots})\.)", rf"\1{PACKAGE}.\2", text
    )


def generate(out: Path) -> None:
    """Run protoc into ``out`` and rewrite the imports of what it wrote."""
    import grpc_tools
    from grpc_tools import protoc

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *proto_files(),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for path in generated(out):
        text = path.read_text()
        if path.name.endswith("_pb2_grpc.py") and "class " not in text:
            path.unlink()  # a file without services gets an empty stub module
        else:
            path.write_text(rewrite(text))
    for folder in {p.parent for p in generated(out)}:
        while folder != out and folder.is_relative_to(out):
            (folder / "__init__.py").touch()
            folder = folder.parent


def generated(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.name.endswith(GENERATED_SUFFIXES) and path.relative_to(root).parts[0] in OWN_ROOTS:
            yield path


def compare(fresh: Path) -> list[str]:
    """Relative paths that differ between a fresh generation and the files in place."""
    ours = {str(p.relative_to(HERE)): p for p in generated(HERE)}
    theirs = {str(p.relative_to(fresh)): p for p in generated(fresh)}
    differ = sorted(set(ours) ^ set(theirs))
    both = sorted(set(ours) & set(theirs))
    differ += [k for k in both if ours[k].read_text() != theirs[k].read_text()]
    return differ


def install(fresh: Path, package: Path = HERE) -> None:
    """Replace the generated modules under ``package`` with those under ``fresh``."""
    for path in generated(package):
        path.unlink()
    for path in generated(fresh):
        target = package / path.relative_to(fresh)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        init = target.parent
        while init != package:
            (init / "__init__.py").touch()
            init = init.parent


# ---- --refresh-protos: descriptors -> .proto text -------------------------------------

SCALARS = {
    1: "double",
    2: "float",
    3: "int64",
    4: "uint64",
    5: "int32",
    6: "fixed64",
    7: "fixed32",
    8: "bool",
    9: "string",
    12: "bytes",
    13: "uint32",
    15: "sfixed32",
    16: "sfixed64",
    17: "sint32",
    18: "sint64",
}
TYPE_MESSAGE, TYPE_ENUM, TYPE_GROUP = 11, 14, 10
LABEL_REPEATED, LABEL_REQUIRED = 3, 2
MAX_FIELD = 536870911


def option_value(field: Any, value: Any) -> str:
    if field.type == field.TYPE_BOOL:
        return "true" if value else "false"
    if field.type == field.TYPE_ENUM:
        return field.enum_type.values_by_number[value].name
    if field.type in (field.TYPE_STRING, field.TYPE_BYTES):
        text = value.decode() if isinstance(value, bytes) else value
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


def option_items(options: Any, skip: tuple[str, ...] = ()) -> list[str]:
    return [
        f"{f.name} = {option_value(f, v)}" for f, v in options.ListFields() if f.name not in skip
    ]


def field_type(field: Any) -> str:
    if field.type in (TYPE_MESSAGE, TYPE_ENUM, TYPE_GROUP):
        return field.type_name
    return SCALARS[field.type]


def range_text(start: int, end: int) -> str:
    """``start``..``end`` inclusive, as a reserved range."""
    if end >= MAX_FIELD:
        return f"{start} to max"
    return str(start) if start == end else f"{start} to {end}"


def field_line(field: Any, syntax: str, maps: dict[str, Any]) -> str:
    entry = maps.get(field.type_name)
    if entry is not None and field.label == LABEL_REPEATED:
        key, value = entry.field
        text = f"map<{field_type(key)}, {field_type(value)}> {field.name} = {field.number}"
    else:
        label = ""
        if field.label == LABEL_REPEATED:
            label = "repeated "
        elif field.label == LABEL_REQUIRED:
            label = "required "
        elif syntax == "proto2" or field.proto3_optional:
            label = "optional "
        text = f"{label}{field_type(field)} {field.name} = {field.number}"
    extras = option_items(field.options)
    if field.HasField("default_value"):
        default = field.default_value
        extras.insert(
            0, f'default = "{default}"' if field.type in (9, 12) else f"default = {default}"
        )
    if field.HasField("json_name"):
        extras.append(f'json_name = "{field.json_name}"')
    if extras:
        text += f" [{', '.join(extras)}]"
    return text + ";"


def reserved_lines(item: Any, indent: str, past_end: int) -> list[str]:
    """An enum's or message's ``reserved`` numbers and names. A message's ranges end one
    past their last number (``past_end=1``), an enum's on it (``past_end=0``)."""
    ranges = [range_text(r.start, r.end - past_end) for r in item.reserved_range]
    names = [f'"{name}"' for name in item.reserved_name]
    return [f"{indent}reserved {entry};" for entry in ranges + names]


def enum_lines(enum: Any, indent: str) -> list[str]:
    lines = [f"{indent}enum {enum.name} {{"]
    lines += [f"{indent}  option {item};" for item in option_items(enum.options)]
    for value in enum.value:
        extras = option_items(value.options)
        suffix = f" [{', '.join(extras)}]" if extras else ""
        lines.append(f"{indent}  {value.name} = {value.number}{suffix};")
    lines += reserved_lines(enum, indent + "  ", past_end=0)
    return [*lines, f"{indent}}}"]


def message_lines(message: Any, syntax: str, prefix: str, indent: str) -> list[str]:
    """One message; nested types and map fields are interleaved as declared."""
    full = f"{prefix}.{message.name}"
    lines = [f"{indent}message {message.name} {{"]
    inner = indent + "  "
    lines += [f"{inner}option {item};" for item in option_items(message.options)]
    maps = {
        f"{full}.{nested.name}": nested
        for nested in message.nested_type
        if nested.options.map_entry
    }
    for enum in message.enum_type:
        lines += enum_lines(enum, inner)
    fields = list(message.field)
    real_oneofs = {
        f.oneof_index for f in fields if f.HasField("oneof_index") and not f.proto3_optional
    }

    def flush(upto: int) -> None:
        current = None
        while fields and upto > 0:
            field = fields.pop(0)
            upto -= 1
            in_oneof = field.HasField("oneof_index") and field.oneof_index in real_oneofs
            group = field.oneof_index if in_oneof else None
            if group != current:
                if current is not None:
                    lines.append(f"{inner}}}")
                if group is not None:
                    lines.append(f"{inner}oneof {message.oneof_decl[group].name} {{")
                current = group
            pad = inner + ("  " if group is not None else "")
            lines.append(pad + field_line(field, syntax, maps))
        if current is not None:
            lines.append(f"{inner}}}")

    for nested in message.nested_type:
        name = f"{full}.{nested.name}"
        if nested.options.map_entry:
            position = next(i for i, f in enumerate(fields) if f.type_name == name)
            flush(position + 1)
        else:
            lines += message_lines(nested, syntax, full, inner)
    flush(len(fields))
    lines += reserved_lines(message, inner, past_end=1)
    for extension in message.extension_range:
        lines.append(f"{inner}extensions {range_text(extension.start, extension.end - 1)};")
    return [*lines, f"{indent}}}"]


def proto_text(proto: Any) -> str:
    """A ``FileDescriptorProto`` as ``.proto`` source that compiles back to the same bytes."""
    syntax = proto.syntax or "proto2"
    lines = [f'syntax = "{syntax}";', ""]
    if proto.package:
        lines += [f"package {proto.package};", ""]
    public = set(proto.public_dependency)
    for i, dependency in enumerate(proto.dependency):
        lines.append(f'import {"public " if i in public else ""}"{dependency}";')
    if proto.dependency:
        lines.append("")
    items = option_items(proto.options)
    lines += [f"option {item};" for item in items]
    if items:
        lines.append("")
    prefix = f".{proto.package}" if proto.package else ""
    for enum in proto.enum_type:
        lines += [*enum_lines(enum, ""), ""]
    for message in proto.message_type:
        lines += [*message_lines(message, syntax, prefix, ""), ""]
    for service in proto.service:
        lines.append(f"service {service.name} {{")
        lines += [f"  option {item};" for item in option_items(service.options)]
        for method in service.method:
            stream_in = "stream " if method.client_streaming else ""
            stream_out = "stream " if method.server_streaming else ""
            extras = option_items(method.options)
            body = " {" + " ".join(f"option {e};" for e in extras) + "}" if extras else ";"
            lines.append(
                f"  rpc {method.name}({stream_in}{method.input_type}) "
                f"returns ({stream_out}{method.output_type}){body}"
            )
        lines += ["}", ""]
    header = "// TF Serving's protocol as TensorFlow registers it (written by regenerate.py).\n"
    return header + "\n".join(lines).rstrip() + "\n"


def refresh_protos() -> None:
    from google.protobuf import descriptor_pb2

    files: dict[str, Any] = {}

    def walk(descriptor: Any) -> None:
        if descriptor.name in files or descriptor.name.startswith("google/protobuf/"):
            return
        files[descriptor.name] = descriptor
        for dependency in descriptor.dependencies:
            walk(dependency)

    for module in ROOT_MODULES:
        walk(importlib.import_module(module).DESCRIPTOR)
    shutil.rmtree(PROTO_DIR, ignore_errors=True)
    for name, descriptor in sorted(files.items()):
        proto = descriptor_pb2.FileDescriptorProto()
        descriptor.CopyToProto(proto)
        path = PROTO_DIR / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(proto_text(proto))
        print(f"wrote {path.relative_to(HERE)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="fail if any is missing or stale")
    mode.add_argument("--refresh-protos", action="store_true", help="rewrite third_party/ from TF")
    args = parser.parse_args(argv)
    if args.refresh_protos:  # protoc must not run in a process that loaded TensorFlow
        refresh_protos()
        print("now run regenerate again without flags")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        if args.check:
            stale = compare(fresh)
            for name in stale:
                print(f"stale: {name}", file=sys.stderr)
            if stale:
                print(f"regenerate them: python -m {PACKAGE}.regenerate", file=sys.stderr)
            return 1 if stale else 0
        install(fresh)
    print(f"generated {len(list(generated(HERE)))} files from {len(proto_files())} protos")
    return 0


if __name__ == "__main__":
    sys.exit(main())
