"""Session-wide test configuration: tests under tests/lab/ are marked ``lab``.

The lab's skip-or-fail logic lives in tests/lab/conftest.py; marking here lets
``pytest -m 'not lab'`` deselect the whole lab cheaply from anywhere.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_LAB_DIR = Path(__file__).parent / "lab"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _LAB_DIR in item.path.parents:
            item.add_marker(pytest.mark.lab)
