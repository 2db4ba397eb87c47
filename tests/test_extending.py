"""Extending fli2moe is one module (or class) and its registration: a toy dataset, model and attribution
method, each registered here, go through the code that uses them (README, "Extending"). And the imports of
src/ run one way: no module imports itself back through others."""

import ast
from dataclasses import dataclass, fields
from pathlib import Path

import pytest
import torch

from conftest import REPO, write_feature_set
from fli2moe.attribution import METHODS, attribute, attribution_method
from fli2moe.datasets import DATASETS, FeatureDataset
from fli2moe.features import read_manifest
from fli2moe.models import MODELS, FLI2MoEConfig, FusionConfig, FusionExpert, ModelEntry, ModalitySpec, build_model
from fli2moe.models.dense import DenseFusion
from fli2moe.params import Params, ParamsError
from fli2moe.training import model_config
from fli2moe.validation import positive_int

SRC = REPO / "src"


@pytest.fixture
def registered():
    """Registers entries for one test and removes them after: `registered(REGISTRY, name, entry)`."""
    added = []

    def register(registry, name, entry):
        registry.register(name)(entry)
        added.append((registry, name))
        return entry

    yield register
    for registry, name in added:
        registry.unregister(name)


# ------------------------------------------------------------------------------------------------- dataset

@dataclass(frozen=True)
class ToyParams(FeatureDataset):
    """A toy dataset that writes a small feature set (a real one would be a module of datasets/)."""
    samples: int

    def validate(self, key: str) -> None:
        positive_int(f"{key}.samples", self.samples)

    def write_features(self, out) -> dict:
        return write_feature_set(Path(out), sizes={"train": self.samples, "val": 4, "test": 4})


def test_a_registered_dataset_is_validated_and_written(raw_params, registered, tmp_path):
    registered(DATASETS, "toy", ToyParams)
    raw_params["data"]["toy"] = {"samples": 8}
    raw_params["datasets"] = ["toy"]
    raw_params["moe_plain_datasets"] = []
    params = Params.from_dict(raw_params)
    manifest = params.data["toy"].write_features(tmp_path / "toy")
    assert manifest["splits"]["train"] == 8 and read_manifest(tmp_path / "toy")["splits"] == manifest["splits"]
    raw_params["data"]["toy"] = {"samples": 0}
    with pytest.raises(ParamsError, match="data.toy.samples"):
        Params.from_dict(raw_params)


def test_several_bring_your_own_feature_sets_at_once(raw_params, tmp_path):
    for name in ("mine", "theirs"):
        write_feature_set(tmp_path / "data" / name)
        raw_params["data"][name] = {"kind": "custom", "root": str(tmp_path / "data" / name)}
    raw_params["datasets"], raw_params["moe_plain_datasets"] = ["mine", "theirs"], []
    params = Params.from_dict(raw_params)
    for name in ("mine", "theirs"):
        params.data[name].write_features(tmp_path / "features" / name)
        assert read_manifest(tmp_path / "features" / name)["splits"]
    raw_params["data"]["other"] = {"kind": "imagenet", "root": "x"}
    with pytest.raises(ParamsError, match="data.other: unknown dataset 'imagenet'"):
        Params.from_dict(raw_params)
    raw_params["data"]["other"] = {"kind": "custom", "root": "x", "split": 0.5}
    with pytest.raises(ParamsError, match="data.other.split"):
        Params.from_dict(raw_params)


# --------------------------------------------------------------------------------------------------- model

@dataclass
class WideConfig(FusionConfig):
    """A toy model: the dense baseline with two experts averaged (its config adds nothing, so `model` fills it)."""


class Wide(DenseFusion):
    roster = [("dense", None), ("dense", None)]

    def __init__(self, config: WideConfig):
        super().__init__(config)
        self.second = FusionExpert(config)

    def forward(self, projected, mask, return_attention=False):
        from fli2moe.models.fusion import combine_experts, run_experts

        outputs = run_experts([self.expert, self.second], self.front.embed(projected, mask), mask, return_attention)
        return combine_experts(outputs, projected.new_full((projected.shape[0], 2), 0.5))


def test_a_registered_model_is_validated_configured_and_built(raw_params, registered, tmp_path):
    registered(MODELS, "wide", ModelEntry(WideConfig, Wide))
    raw_params["models"] = ["dense", "wide"]
    params = Params.from_dict(raw_params)
    manifest = write_feature_set(tmp_path / "toy")
    config = model_config("wide", manifest, params.model, params.moe)
    assert type(config) is WideConfig and config.hidden == params.model.hidden
    model = build_model("wide", config.to_dict())
    projected = torch.zeros(2, config.num_tokens, config.hidden)
    assert model(projected, torch.ones(2, config.num_tokens, dtype=torch.bool)).weights.shape == (2, 2)


def test_the_model_and_moe_sections_are_the_config_fields_with_params_yaml_defaults(raw_params):
    params = Params.from_dict(raw_params)
    fusion = {f.name: f.default for f in fields(FusionConfig) if f.name not in ("modalities", "num_classes")}
    moe = {f.name: f.default for f in fields(FLI2MoEConfig) if f.name not in {g.name for g in fields(FusionConfig)}}
    assert vars(params.model) == fusion and vars(params.moe) == moe


# ------------------------------------------------------------------------------------------ attribution

def test_a_registered_attribution_method_is_validated_and_dispatched(raw_params):
    @attribution_method("ones")  # what a module adding a method writes
    def ones(forward, baseline, n_steps, internal_batch_size):
        B, E = forward.y.shape
        return torch.ones(B, E, forward.x.shape[1]), None

    try:
        raw_params["attribution"]["method"] = "ones"
        assert Params.from_dict(raw_params).attribution.method == "ones"
        torch.manual_seed(0)
        model = build_model("fl_i2moe", FLI2MoEConfig([ModalitySpec("a", 5, 3), ModalitySpec("b", 6, 4)], 3))
        projected, mask = torch.randn(2, 7, model.config.hidden), torch.ones(2, 7, dtype=torch.bool)
        target = torch.tensor([[True, False, False], [False, True, False]])
        maps = attribute(model, projected, mask, target, "ones")
        assert torch.equal(maps.whole, torch.full((2, 7), 4.0))  # four experts' maps summed
    finally:
        METHODS.unregister("ones")
    with pytest.raises(ParamsError, match="attribution.method"):
        Params.from_dict(raw_params)


# -------------------------------------------------------------------------------------------------- imports

def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str]) -> set[str]:
    """The project modules that `path` names in its import statements (anywhere in its body)."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from a import b` imports the module a.b when there is one, else a name of a
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in modules}
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in SRC.rglob("*.py")}
    return {name: imports(path, set(paths)) - {name} for name, path in paths.items()}


def test_no_import_cycle_in_src():
    graph, state = import_graph(), {}  # state: "open" while on the DFS stack, "done" after

    def visit(name: str, stack: list[str]) -> None:
        state[name] = "open"
        for child in sorted(graph[name]):
            if state.get(child) == "open":
                pytest.fail(f"import cycle: {' -> '.join(stack[stack.index(child):] + [child])}")
            if child not in state:
                visit(child, stack + [child])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_imports_run_one_way_and_explanations_need_no_training_code():
    graph = import_graph()
    assert "fli2moe.features" in graph["fli2moe.masking"] and "fli2moe.masking" in graph["fli2moe.training"]
    assert "fli2moe.masking" not in graph["fli2moe.features"] and "fli2moe.training" not in graph["fli2moe.masking"]
    for name in ("fli2moe.explaining", "fli2moe.attribution", "fli2moe.probing", "fli2moe.ablation",
                 "fli2moe.checkpoints"):
        assert "fli2moe.training" not in graph[name], name
