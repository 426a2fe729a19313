"""The import contracts (tools/layering.py) hold on the tree, and the check fails on wrong-way imports.

Part of `make lint`. The synthetic trees below are the proof that the checker can fail: each plants one
wrong-way import the architecture forbids and expects exactly that violation.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import layering

pytestmark = pytest.mark.unit


def test_the_tree_keeps_its_layers() -> None:
    assert layering.violations() == []


def plant(root: Path, files: dict[str, str]) -> Path:
    base = {
        "metal3_pivot/__init__.py": '__all__ = ["Mover"]\nfrom metal3_pivot.mover import Mover\n',
        "metal3_pivot/mover.py": "class Mover: ...\n",
        "metal3_pivot/plan.py": "X = 1\n",
        "components/__init__.py": "",
        "components/thing.py": "from metal3_pivot import Mover\n",
        "policies/__init__.py": "",
        "policies/rules.py": "import re\n",
        "lab/__init__.py": "",
    }
    for rel, text in {**base, **files}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def test_a_clean_synthetic_tree_passes(tmp_path: Path) -> None:
    assert layering.violations(plant(tmp_path, {})) == []


@pytest.mark.parametrize(("files", "expected"), [
    # the engine reaching up to the lab (at function level: still counted)
    ({"metal3_pivot/plan.py": "def f():\n    from lab import cluster\n"}, "metal3_pivot.plan imports lab.cluster"),
    # the engine importing Pulumi
    ({"metal3_pivot/plan.py": "import pulumi\n"}, "metal3_pivot.plan imports pulumi"),
    # the policy pack depending on the components
    ({"policies/rules.py": "from components.thing import Mover\n"}, "policies.rules imports components.thing"),
    # a component reaching past the public face into an engine module
    ({"components/thing.py": "from metal3_pivot.plan import X\n"}, "components.thing imports metal3_pivot.plan"),
    # a circle in the engine hidden under TYPE_CHECKING, as mover <-> preflight once was
    ({"metal3_pivot/mover.py": "from metal3_pivot import plan\nclass Mover: ...\n",
      "metal3_pivot/plan.py": ("from typing import TYPE_CHECKING\n"
                               "if TYPE_CHECKING:\n    from metal3_pivot.mover import Mover\n")},
     "import circle in the engine: metal3_pivot.mover -> metal3_pivot.plan -> metal3_pivot.mover"),
    # a relative wrong-way import in the lab
    ({"lab/x.py": "from ..tests.kit import env\n", "tests/__init__.py": "", "tests/kit/__init__.py": "",
      "tests/kit/env.py": ""},
     "lab.x imports tests.kit.env"),
    # a test module used as a library
    ({"tests/__init__.py": "", "tests/test_a.py": "X = 1\n", "tests/test_b.py": "from tests.test_a import X\n"},
     "tests.test_b imports tests.test_a.X"),
])
def test_a_wrong_way_import_fails_the_check(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    found = layering.violations(plant(tmp_path, files))
    assert len(found) == 1 and expected in found[0], found
