"""``housing data fetch``: verify, extract and validate the dataset."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    from training.data import BUNDLED_ARCHIVE, CANONICAL_URL, DEFAULT_DATA_DIR

    parser = subparsers.add_parser(
        "fetch",
        help="verify the archive's SHA-256, extract housing.csv safely and validate it",
        description=(
            "Verify, extract and validate housing.tgz. The source may be a path or an "
            f"http(s) URL, e.g. {CANONICAL_URL}."
        ),
    )
    parser.add_argument(
        "--source",
        default=str(BUNDLED_ARCHIVE),
        help="archive path or URL (default: the bundled data/housing.tgz)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="where housing/housing.csv is written (default: data/)",
    )
    parser.add_argument(
        "--sha256",
        default=None,
        help="expected SHA-256 of the archive (default: the book's archive)",
    )
    parser.set_defaults(func=run_fetch)


def run_fetch(args: argparse.Namespace) -> int:
    from training.data import DATA_SHA256, fetch, load_csv

    path = fetch(args.source, args.data_dir, args.sha256 or DATA_SHA256)
    frame = load_csv(path)
    missing = int(frame["total_bedrooms"].isna().sum())
    print(
        f"ok: {path} ({len(frame):,} rows, {frame.shape[1]} columns, "
        f"{missing} missing total_bedrooms)"
    )
    return 0
