"""Command lines for tests that run ``housing ...`` commands, written as keyword arguments."""

from __future__ import annotations


def flags(**options: object) -> list[str]:
    """``id_column="x", batch_size=50`` → ``["--id-column", "x", "--batch-size", "50"]``, in
    the order given; ``True`` is the bare flag and ``None`` or ``False`` leaves it out."""
    argv: list[str] = []
    for name, value in options.items():
        if value is None or value is False:
            continue
        argv.append("--" + name.replace("_", "-"))
        if value is not True:
            argv.append(str(value))
    return argv
