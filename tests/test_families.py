"""Model families as plug-ins (harness/families/): every family answers the one interface, a new family module is
found without editing anything else, and the typed config round-trips through what a record stores."""

import dataclasses
import pickle

import pytest

from harness import families
from harness.config.compose import make_case
from harness.config.groups import BenchConfig, ConfigError
from harness.families import Family


def test_every_family_module_is_found_and_answers_the_interface():
    found = families.families()
    assert sorted(found) == ["hf", "llama", "mlp"]
    for name, family in found.items():
        assert isinstance(family, Family) and family.name == name
        # the schema's own name field defaults to the family: Hydra's `model=<name>` composes it
        assert {f.name: f.default for f in dataclasses.fields(family.schema)}["name"] == name
        assert all(
            callable(getattr(family, f.name)) for f in dataclasses.fields(Family) if f.type.startswith("Callable")
        )


@pytest.mark.parametrize(
    "overrides, label, targets",
    [
        (["model=mlp", "model.depth=3", "model.width=16", "model.norm=true"], "mlp:3x16+ln", ("linear",)),
        (
            ["model=llama", "model.attn_implementation=eager"],
            "llama:tiny:eager",
            ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
        ),
        (
            ["model=hf", "model.preset=tiny-gpt2", "model.num_layers=3"],
            "hf:tiny-gpt2[num_layers=3]",
            ("c_attn", "c_fc", "c_proj"),
        ),
    ],
)
def test_a_family_labels_and_targets_its_own_models(overrides, label, targets):
    cfg = make_case(["method=lora", *overrides]).config
    family = families.of(cfg.model)
    assert isinstance(cfg.model, family.schema)
    assert family.label(cfg.model) == label
    assert family.default_targets(cfg.model) == targets


def test_a_case_travels_as_its_typed_config_and_a_record_gives_it_back():
    case = make_case(["model=llama", "method=qlora", "checkpointing=on", "device=cpu"])
    assert pickle.loads(pickle.dumps(case)) == case  # to the case process as itself
    stored = case.config_dict
    assert "launcher" not in stored  # how a case starts is not what it measured
    again = BenchConfig.from_dict(stored)
    assert again == case.config and again.to_dict() == stored


def test_an_older_record_lacking_newer_fields_reads_with_their_defaults():
    stored = make_case(["model=mlp", "method=sgd", "device=cpu"]).config_dict
    del stored["parallel"], stored["measure"]["case_timeout_s"], stored["device"]["memory_budget_gib"]
    cfg = BenchConfig.from_dict(stored)
    assert cfg.parallel.name == "none" and cfg.measure.case_timeout_s == 1800.0 and cfg.device.memory_budget_gib is None


def test_a_family_module_missing_a_function_fails_naming_it():
    with pytest.raises(TypeError, match="does not define .*label"):
        families.define("half", object, False, {f: print for f in families.FUNCTIONS if f != "label"})


def test_an_unknown_family_is_refused_naming_those_there_are():
    cfg = make_case(["model=mlp", "method=sgd"]).config
    bad = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, name="vit"))
    with pytest.raises(ConfigError) as err:
        bad.validate()
    assert err.value.key == "model" and "allowed: hf, llama, mlp" in str(err.value)


def test_a_new_family_is_one_module(tmp_path, monkeypatch):
    """A module that ends in FAMILY = define(...) dropped into the package is a family: nothing else to edit."""
    (tmp_path / "toy.py").write_text(
        "from dataclasses import dataclass\n"
        "from harness.families import define\n"
        "from harness.families.mlp import *  # the mlp's functions, but for its label\n\n"
        "@dataclass\nclass ToyConfig:\n    name: str = 'toy'\n    width: int = 4\n\n"
        "def label(model):\n    return f'toy:{model.width}'\n\n"
        "FAMILY = define('toy', ToyConfig, transformers=False, namespace=globals())\n"
    )
    monkeypatch.setattr(families, "__path__", [*families.__path__, str(tmp_path)])
    monkeypatch.setattr(families, "_FAMILIES", {})
    assert families.names() == ("hf", "llama", "mlp", "toy")
    stored = {**make_case(["model=mlp", "method=sgd"]).config_dict, "model": {"name": "toy", "width": 7}}
    cfg = BenchConfig.from_dict(stored)
    assert families.of(cfg.model).label(cfg.model) == "toy:7"
