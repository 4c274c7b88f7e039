"""Turning command-line overrides into validated case configs, and suites / `-m` sweeps into case lists."""

from __future__ import annotations

import dataclasses
import itertools
import os
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from harness import repo_root
from harness.config.case import Case
from harness.config.groups import BenchConfig, ConfigError, SuiteConfig
from harness.config.parallel import LauncherConfig

GROUPS = (
    "model",
    "method",
    "precision",
    "checkpointing",
    "workload",
    "measure",
    "device",
    "parallel",
    "launcher",
    "suite",
)
LAUNCHER = "launcher"  # how cases start, not what they measure: kept out of a case (harness/config/parallel.py)


def suites_dir() -> Path:
    return Path(os.environ.get("BENCH_SUITES_DIR", repo_root() / "suites")).resolve()


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (suites_dir() / group).glob("*.yaml"))


def override_key(override: str) -> str:
    """The dotted key of a command-line override (`+a.b=1`, `~a.b`, `a.b=1` -> `a.b`): the one parser."""
    return override.split("=", 1)[0].lstrip("+~")


def merge_overrides(*lists: list[str]) -> list[str]:
    """Later lists win per key, keeping first-seen order, so a user's override replaces a suite's."""
    merged: dict[str, str] = {}
    for overrides in lists:
        for override in overrides:
            merged[override_key(override)] = override
    return list(merged.values())


def _cause_with_key(exc: BaseException) -> BaseException | None:
    """The first exception in the cause chain that knows the dotted key it is about (OmegaConf's full_key)."""
    seen = 0
    while exc is not None and seen < 10:
        if getattr(exc, "full_key", None):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def _allowed_keys(dotted: str) -> str:
    parent = dotted.rsplit(".", 1)[0] if "." in dotted else ""
    try:
        node = OmegaConf.select(compose_config([]), parent) if parent else compose_config([])
    except ConfigError:
        return ""
    return ", ".join(sorted(node.keys())) if isinstance(node, DictConfig) else ""


def _explain(exc: Exception, overrides: list[str]) -> ConfigError:
    """Turn Hydra/OmegaConf errors into a ConfigError that names the dotted key and what is allowed."""
    keyed = _cause_with_key(exc)
    if keyed is not None:
        key = str(keyed.full_key)
        first = str(keyed).splitlines()[0]
        if "not in" in first:
            allowed = _allowed_keys(key)
            return ConfigError(key, f"unknown key; allowed keys here: {allowed}" if allowed else first)
        return ConfigError(key, first)
    text = str(exc)
    for group in GROUPS:
        if f"'{group}/" in text or f"group '{group}'" in text or f"in group: {group}" in text:
            chosen = next((o.split("=", 1)[1] for o in overrides if override_key(o) == group), "?")
            return ConfigError(group, f"unknown option {chosen!r}; allowed: {', '.join(group_options(group))}")
    return ConfigError("overrides", text.splitlines()[0])


def register_configs() -> None:
    """Hydra's ConfigStore learns every schema: the YAML files under suites/ only set values."""
    from hydra.core.config_store import ConfigStore

    from harness.config.groups import SCHEMAS

    cs = ConfigStore.instance()
    cs.store(name="bench_schema", node=BenchConfig)
    for option, schema in {**SCHEMAS, "suite": SuiteConfig}.items():
        group = option.split("=")[0]
        name = option.split("=")[1] if "=" in option else group
        cs.store(group=group, name=f"{name}_schema", node=schema)


def compose_config(overrides: list[str]) -> DictConfig:
    """Compose suites/config.yaml with `overrides`; raises ConfigError for anything invalid."""
    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(suites_dir()), version_base="1.3"):
            cfg = compose(config_name="config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        raise _explain(exc, overrides) from None
    finally:
        GlobalHydra.instance().clear()
    return cfg


def to_object(cfg: DictConfig) -> BenchConfig:
    """The composed tree as the typed dataclasses it was declared with: the one conversion (everything after it
    types against harness/config/groups.py)."""
    return OmegaConf.to_object(cfg)


def to_yaml(config: BenchConfig) -> str:
    """A case's config as YAML, in the schema's field order (`bench run --cfg`)."""
    return OmegaConf.to_yaml(OmegaConf.structured(config.to_dict()))


def compose_case(overrides: list[str]) -> BenchConfig:
    """The validated, typed config of one case (ConfigError for anything invalid)."""
    cfg = compose_config(overrides)
    try:
        config = to_object(cfg)
    except OmegaConfBaseException as exc:  # a missing value, or one that does not convert to its field's type
        raise _explain(exc, overrides) from None
    config.validate()
    return config


def expand_sweep(overrides: list[str]) -> list[list[str]]:
    """Hydra's `-m` semantics: every comma list / range() / choice() is crossed with the others."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as exc:
        raise ConfigError("overrides", str(exc).splitlines()[0]) from None
    choices = []
    for override in parsed:
        key = override.get_key_element()
        if override.is_sweep_override():
            choices.append([f"{key}={value}" for value in override.sweep_string_iterator()])
        else:
            choices.append([f"{key}={override.get_value_element_as_str()}"])
    return [list(combo) for combo in itertools.product(*choices)]


def expand_suite(suite: SuiteConfig) -> list[list[str]]:
    """The cases of a suite: base, then each variant, then the cross product of its axes."""
    axes = [f"{key}={values}" for key, values in suite.axes.items()]
    crossed = expand_sweep(axes) if axes else [[]]
    return [merge_overrides(list(suite.base), list(variant), combo) for variant in suite.variants for combo in crossed]


def is_launcher_override(override: str) -> bool:
    return override_key(override).split(".")[0] == LAUNCHER


def make_case(overrides: list[str], suite: str | None = None) -> Case:
    """Compose and validate `overrides` (ConfigError for anything invalid) into a Case."""
    overrides = [o for o in overrides if not is_launcher_override(o)]
    config = dataclasses.replace(compose_case(overrides), launcher=None)
    return Case(tuple(overrides), config, suite)


def plan_launcher(user_overrides: list[str], cases: list[Case]) -> LauncherConfig:
    """The launcher section the user asked for (`launcher=slurm launcher.partition=gpu ...`), validated against
    the planned cases."""
    from harness.config.parallel import validate_launcher

    cfg = compose_config([o for o in user_overrides if is_launcher_override(o)])
    nnodes = max((c.config.parallel.nnodes for c in cases), default=1)
    try:
        launcher = to_object(cfg).launcher
    except OmegaConfBaseException as exc:
        raise _explain(exc, user_overrides) from None
    validate_launcher(launcher, nnodes)
    return launcher


def plan_cases(user_overrides: list[str], multirun: bool) -> list[Case]:
    """Every case to run (suite=... removed from its overrides), composed and validated before anything runs.

    User overrides win over a suite's; with `-m` their comma lists are crossed with the suite's cases.
    """
    suite_name = next((o.split("=", 1)[1] for o in user_overrides if override_key(o) == "suite"), None)
    user = [o for o in user_overrides if override_key(o) != "suite" and not is_launcher_override(o)]
    user_variants = expand_sweep(user) if multirun else [user]
    if suite_name is not None:
        suite = to_object(compose_config([f"suite={suite_name}"])).suite
        suite_cases = expand_suite(suite)
    else:
        suite_cases = [[]]
    return [make_case(merge_overrides(sc, uv), suite_name) for sc in suite_cases for uv in user_variants]
