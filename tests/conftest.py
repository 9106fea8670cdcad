"""Shared fixtures: the dataset and its split are loaded once per session."""

from __future__ import annotations

import pytest

from training.data import Split, load_split


@pytest.fixture(scope="session")
def split() -> Split:
    return load_split()
