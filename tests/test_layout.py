"""The rules the package's rooms make checkable (harness/__init__.py): what each room may import, where Hydra is
used, and how large a module may grow."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "harness"
MAX_MODULE_LINES = 330  # "no module over ~300 lines": a module that outgrows it holds two things


def _imported_after(modules: list[str]) -> set[str]:
    """Top-level packages in sys.modules after importing `modules` in a fresh interpreter."""
    code = (
        f"import importlib, json, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def _room_modules(room: str) -> list[str]:
    return [f"harness.{room}.{p.stem}" for p in sorted((PACKAGE / room).glob("*.py")) if p.stem != "__init__"]


def test_reports_and_records_work_where_torch_is_absent():
    loaded = _imported_after(_room_modules("report") + _room_modules("records"))
    assert not {"torch", "bitsandbytes", "transformers", "peft"} & loaded


def test_the_case_process_loads_neither_pandas_nor_matplotlib_nor_hydra():
    loaded = _imported_after(_room_modules("measure"))
    assert not {"pandas", "matplotlib", "hydra"} & loaded


def test_config_families_and_predict_need_no_torch():
    rooms = _room_modules("config") + _room_modules("families") + _room_modules("predict")
    loaded = _imported_after([m for m in rooms if m != "harness.config.compose"])
    assert not {"torch", "hydra", "pandas"} & loaded


def test_only_compose_touches_hydra():
    users = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(n == "hydra" or n.startswith("hydra.") for n in names):
                users.append(path.relative_to(PACKAGE).as_posix())
    assert sorted(set(users)) == ["config/compose.py"]


def test_no_private_name_is_imported_from_another_module():
    crossings = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("harness"):
                crossings += [
                    f"{path.relative_to(PACKAGE)}: {a.name}"
                    for a in node.names
                    if a.name.startswith("_") and a.name != "__version__"
                ]
    assert crossings == []


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_no_module_outgrows_one_subject(path):
    assert len(path.read_text().splitlines()) <= MAX_MODULE_LINES
