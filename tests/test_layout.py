"""The rules the package's rooms make checkable (harness/__init__.py): what each room may import, where Hydra is
used, that the configuration is typed wherever it goes, that only a family module knows its family, and how long
a function may grow."""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "harness"
MAX_FUNCTION_LINES = 60  # a function longer than a screen does two things: split it by what each part does
# Functions allowed past it, each with why its length is one thing (keep this list short).
LONG_FUNCTIONS: dict[str, str] = {}
# The typed configuration: every schema class a function may take the configuration (or a part of it) as.
CONFIG_TYPES = {
    "BenchConfig",
    "MethodConfig",
    "PrecisionConfig",
    "CheckpointingConfig",
    "WorkloadConfig",
    "MeasureConfig",
    "DeviceConfig",
    "SuiteConfig",
    "ParallelConfig",
    "LauncherConfig",
    "MlpConfig",
    "LlamaModelConfig",
    "HfModelConfig",
}
HYDRA_MODULE = "config/compose.py"  # the one module that sees Hydra's untyped DictConfig


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
    assert sorted(set(users)) == [HYDRA_MODULE]


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


def _functions():
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield path.relative_to(PACKAGE).as_posix(), node


def test_no_function_outgrows_one_subject():
    long = {
        f"{where}:{node.name}": node.end_lineno - node.lineno + 1
        for where, node in _functions()
        if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    }
    assert {k: v for k, v in long.items() if k not in LONG_FUNCTIONS} == {}
    assert set(LONG_FUNCTIONS) <= set(long), "an allowed function got shorter: take it off the list"


def _annotation_names(annotation: ast.expr | None) -> set[str]:
    if annotation is None:
        return set()
    text = ast.unparse(annotation)
    for sep in "|[],.":
        text = text.replace(sep, " ")
    return set(text.split()) - {"None", "Optional"}


def test_the_configuration_is_typed_wherever_it_goes():
    """A parameter that holds the configuration (cfg, config, *_cfg) is annotated with its schema class outside the
    Hydra module: never Any, a dict or a DictConfig (a record's stored config is data and is named for that)."""
    untyped = []
    for where, node in _functions():
        if where == HYDRA_MODULE:
            continue
        for arg in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]:
            names = _annotation_names(arg.annotation)
            holds_config = arg.arg in ("cfg", "config") or arg.arg.endswith("_cfg") or "DictConfig" in names
            if holds_config and (not names or not names <= CONFIG_TYPES):
                untyped.append(
                    f"{where}:{node.lineno} {node.name}({arg.arg}: {ast.unparse(arg.annotation or ast.Name('?'))})"
                )
    assert untyped == []


def test_only_a_family_module_switches_on_the_family():
    """`model.name == ...` (or `["name"] ==` on a model section) only in harness/families/: everywhere else a
    family is asked (harness/families/__init__.py)."""
    pattern = re.compile(r"model\.name\s*(==|!=)|\[\"name\"\]\s*(==|!=)")
    found = [
        f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if "families" not in path.relative_to(PACKAGE).parts
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert found == []
