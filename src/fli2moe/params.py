"""Load and validate `params.yaml` before any stage does work.

Every section is a frozen dataclass whose fields are exactly the keys `params.yaml` must hold:
a missing key, an unknown key or an impossible value raises `ParamsError` naming the full key
(`extract.batch_size`), so a typo never silently falls back to a default. The pipeline's values live in
`params.yaml`; the names it may use come from the registries of the modules that implement them
(`DATASETS`, `ENCODERS`, `MODELS`, attribution `METHODS`, interaction `INDICES`), and the `model` and `moe`
sections are the fields of the model config dataclasses, whose defaults are those of params.yaml
(tests/test_params.py checks).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dvc.utils.serialize import YAMLError, parse_yaml

from fli2moe.attribution import METHODS
from fli2moe.datasets import DATASETS
from fli2moe.encoders import ENCODERS, encoder_names
from fli2moe.interactions import INDICES
from fli2moe.masking import BASELINES, QUANTITIES
from fli2moe.models import MODELS, FLI2MoEConfig, FusionConfig
from fli2moe.models.fl_i2moe import ACTIVATIONS, EXPERT_INITS, INTERACTION_ON, PERTURBATIONS, ROUTER_INPUTS
# The checks are shared with the modules that declare a section of their own (a dataset's data.<name>).
from fli2moe.validation import ParamsError, check_max_tokens
from fli2moe.validation import choice as _choice
from fli2moe.validation import fraction as _fraction
from fli2moe.validation import non_negative_int as _non_negative_int
from fli2moe.validation import non_negative_number as _non_negative_number
from fli2moe.validation import optional_positive_int as _optional_positive_int
from fli2moe.validation import positive_int as _positive_int
from fli2moe.validation import positive_number as _positive_number

KNOWN_MODELS = MODELS.names


def _encoder(key: str, value: Any, known: tuple[str, ...]) -> None:
    if not isinstance(value, str) or not (value in known or (value.startswith("hf:") and len(value) > 3)):
        raise ParamsError(f"{key} must be one of {', '.join(known)} or hf:<name-or-path>, got {value!r}")


# Keys that a release replaced: an old params.yaml or `-S` gets the new key's name, not only "unknown key".
REPLACED = {"probe.num_contexts": "probe.evaluations (a budget of model evaluations per example, the same cost "
                                  "in every scheme; issue 17)",
            "explain.model_seed": "explain.seeds (every trained seed is explained; issue 19)"}


def _check_keys(cls, raw: Any, key: str) -> None:
    """`raw` must be a mapping with exactly the fields of dataclass `cls` (`key` = "" at top level)."""
    where = key or "params.yaml"
    prefix = f"{key}." if key else ""
    if not isinstance(raw, dict):
        raise ParamsError(f"{where} must be a mapping, got {raw!r}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        replaced = REPLACED.get(f"{prefix}{unknown[0]}")
        if replaced is not None:
            raise ParamsError(f"{prefix}{unknown[0]} was replaced by {replaced}")
        raise ParamsError(f"unknown key {prefix}{unknown[0]} (known: {', '.join(names)})")
    missing = [n for n in names if n not in raw]
    if missing:
        raise ParamsError(f"missing key {prefix}{missing[0]} in params.yaml")


def _build(cls, raw: Any, key: str):
    """Instantiate dataclass `cls` from mapping `raw`, naming `key.field` in every error."""
    _check_keys(cls, raw, key)
    obj = cls(**raw)
    obj.validate(key)
    return obj


@dataclass(frozen=True)
class ExtractParams:
    image_encoder: str
    text_encoder: str
    image_size: list
    max_tokens: int
    batch_size: int
    num_workers: int

    def validate(self, key: str) -> None:
        _encoder(f"{key}.image_encoder", self.image_encoder, encoder_names("image"))
        _encoder(f"{key}.text_encoder", self.text_encoder, encoder_names("text"))
        if not (isinstance(self.image_size, list) and len(self.image_size) == 2):
            raise ParamsError(f"{key}.image_size must be [height, width], got {self.image_size!r}")
        for i, side in enumerate(self.image_size):
            _positive_int(f"{key}.image_size[{i}]", side)
            if side % 32:
                raise ParamsError(f"{key}.image_size[{i}] must be a multiple of 32 (the encoder's stride), got {side}")
        _positive_int(f"{key}.max_tokens", self.max_tokens)
        # an hf: encoder's limit is read from its config when it is loaded (encoders.py)
        if self.text_encoder in ENCODERS:
            check_max_tokens(key, self.text_encoder, self.max_tokens, ENCODERS[self.text_encoder].max_tokens)
        _positive_int(f"{key}.batch_size", self.batch_size)
        _non_negative_int(f"{key}.num_workers", self.num_workers)


def _validate_model(self, key: str) -> None:
    for name in ("hidden", "layers", "heads", "mlp_ratio"):
        _positive_int(f"{key}.{name}", getattr(self, name))
    if self.hidden % self.heads:
        raise ParamsError(f"{key}.hidden ({self.hidden}) must be divisible by {key}.heads ({self.heads})")
    _fraction(f"{key}.dropout", self.dropout)


def _validate_moe(self, key: str) -> None:
    # The dataset-specific bound num_experts >= M + 2 is checked by the model config, before training.
    _positive_int(f"{key}.num_experts", self.num_experts)
    _positive_number(f"{key}.tau", self.tau)
    _non_negative_number(f"{key}.lambda_int", self.lambda_int)
    _choice(f"{key}.interaction_on", self.interaction_on, INTERACTION_ON)
    _choice(f"{key}.perturb", self.perturb, PERTURBATIONS)
    _positive_int(f"{key}.router_hidden", self.router_hidden)
    _choice(f"{key}.router_input", self.router_input, ROUTER_INPUTS)
    _choice(f"{key}.router_activation", self.router_activation, tuple(ACTIVATIONS))
    _fraction(f"{key}.router_dropout", self.router_dropout)
    _choice(f"{key}.expert_init", self.expert_init, EXPERT_INITS)


def _config_section(name: str, config: type, exclude: set[str], validate) -> type:
    """A section dataclass with the fields (and defaults) of model config `config` less `exclude`."""
    fields = [(f.name, f.type, dataclasses.field(default=f.default)) for f in dataclasses.fields(config)
              if f.name not in exclude]
    return dataclasses.make_dataclass(name, fields, frozen=True, namespace={"validate": validate})


# `model`: the fusion-expert architecture, every FusionConfig field but those read from the feature set.
ModelParams = _config_section("ModelParams", FusionConfig, {"modalities", "num_classes"}, _validate_model)
# `moe`: what FL-I2MoE's config adds.
MoEParams = _config_section("MoEParams", FLI2MoEConfig, {f.name for f in dataclasses.fields(FusionConfig)},
                            _validate_moe)


class PerDataset:
    """A section with an `overrides` field: {dataset: {key: value}} replacing any of its other keys for that
    dataset's stages (the synthetic benchmark trains and is probed differently from real data)."""

    def for_dataset(self, dataset: str):
        """This section with the dataset's overrides applied (no overrides: unchanged)."""
        return dataclasses.replace(self, overrides={}, **self.overrides.get(dataset, {}))

    def validate_overrides(self, key: str) -> None:
        if not isinstance(self.overrides, dict):
            raise ParamsError(f"{key}.overrides must be a mapping dataset -> settings, got {self.overrides!r}")
        allowed = [f.name for f in dataclasses.fields(self) if f.name != "overrides"]
        for dataset, settings in self.overrides.items():  # their names are checked against data by Params
            if not isinstance(settings, dict) or not set(settings) <= set(allowed):
                raise ParamsError(f"{key}.overrides.{dataset} may set only {', '.join(allowed)}, got {settings!r}")
            dataclasses.replace(self, overrides={}, **settings).validate(f"{key}.overrides.{dataset}")


@dataclass(frozen=True)
class TrainParams(PerDataset):
    seeds: list
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    token_dropout: float  # probability of removing each real token during training (0 = never)
    patience: int | None  # stop after this many epochs without a better validation score (None = run every epoch)
    overrides: dict  # dataset -> {any of the keys above: value}

    def validate(self, key: str) -> None:
        if not isinstance(self.seeds, list) or not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ParamsError(f"{key}.seeds must be a non-empty list of distinct seeds, got {self.seeds!r}")
        for i, seed in enumerate(self.seeds):
            _non_negative_int(f"{key}.seeds[{i}]", seed)
        _positive_int(f"{key}.epochs", self.epochs)
        _optional_positive_int(f"{key}.patience", self.patience)
        _positive_int(f"{key}.batch_size", self.batch_size)
        _positive_number(f"{key}.lr", self.lr)
        _non_negative_number(f"{key}.weight_decay", self.weight_decay)
        if isinstance(self.token_dropout, bool) or not isinstance(self.token_dropout, (int, float)) \
                or not 0 <= self.token_dropout < 1:
            raise ParamsError(f"{key}.token_dropout must be a probability in [0, 1), got {self.token_dropout!r}")
        self.validate_overrides(key)


@dataclass(frozen=True)
class ExplainParams:
    baseline: str
    seeds: list | str  # "all" (every trained seed) or a list of trained seeds
    max_batch: int

    def validate(self, key: str) -> None:
        _choice(f"{key}.baseline", self.baseline, BASELINES)
        if self.seeds != "all":
            if not isinstance(self.seeds, list) or not self.seeds or len(set(self.seeds)) != len(self.seeds):
                raise ParamsError(f"{key}.seeds must be all or a non-empty list of distinct trained seeds, "
                                  f"got {self.seeds!r}")
            for i, seed in enumerate(self.seeds):
                _non_negative_int(f"{key}.seeds[{i}]", seed)
        _positive_int(f"{key}.max_batch", self.max_batch)


@dataclass(frozen=True)
class AttributionParams:
    method: str
    examples: int | None
    k_percents: list
    random_repeats: int
    quantity: str
    ig_steps: int
    bootstrap: int

    def validate(self, key: str) -> None:
        _choice(f"{key}.method", self.method, METHODS.names)
        _optional_positive_int(f"{key}.examples", self.examples)
        if not isinstance(self.k_percents, list) or not self.k_percents:
            raise ParamsError(f"{key}.k_percents must be a non-empty list of percentages, got {self.k_percents!r}")
        for i, k in enumerate(self.k_percents):
            if isinstance(k, bool) or not isinstance(k, (int, float)) or not 0 < k <= 100:
                raise ParamsError(f"{key}.k_percents[{i}] must be in (0, 100], got {k!r}")
        _positive_int(f"{key}.random_repeats", self.random_repeats)
        _choice(f"{key}.quantity", self.quantity, QUANTITIES)
        _positive_int(f"{key}.ig_steps", self.ig_steps)
        _positive_int(f"{key}.bootstrap", self.bootstrap)


@dataclass(frozen=True)
class ProbeParams(PerDataset):
    examples: int | None
    candidates: int | str
    estimator: str
    evaluations: int  # Monte Carlo budget per example: coalitions evaluated, all indices together
    scheme: str
    contenders: int  # screen_and_refine: pairs refined per index
    screen_share: float  # screen_and_refine: share of the sampled budget spent on the surrogate's coalitions
    rg_keep: float
    quantity: str
    indices: list  # names of interaction indices (fli2moe.interactions.INDICES, checked by the probe stage)
    bootstrap: int  # resamples for the confidence intervals over seeds and examples
    overrides: dict  # dataset -> {any of the keys above: value}

    def validate(self, key: str) -> None:
        _optional_positive_int(f"{key}.examples", self.examples)
        if self.candidates != "all":
            _positive_int(f"{key}.candidates", self.candidates)
        _choice(f"{key}.estimator", self.estimator, ("montecarlo", "screen_and_refine", "exact"))
        if self.estimator == "exact" and self.candidates == "all":
            raise ParamsError(f"{key}.estimator = exact needs a number of {key}.candidates (2^n coalitions)")
        if self.estimator == "exact" and 2 * self.candidates > 16:
            raise ParamsError(f"{key}.estimator = exact enumerates 2^n coalitions and allows n <= 16 "
                              f"candidates, {key}.candidates = {self.candidates} per modality gives more")
        _positive_int(f"{key}.evaluations", self.evaluations)  # whether it buys 2 contexts depends on n: the stage
        _choice(f"{key}.scheme", self.scheme, ("outside", "owen"))
        _positive_int(f"{key}.contenders", self.contenders)
        if (isinstance(self.screen_share, bool) or not isinstance(self.screen_share, (int, float))
                or not 0 < self.screen_share < 1):
            raise ParamsError(f"{key}.screen_share must be a share in (0, 1), got {self.screen_share!r}")
        if isinstance(self.rg_keep, bool) or not isinstance(self.rg_keep, (int, float)) or not 0 <= self.rg_keep <= 1:
            raise ParamsError(f"{key}.rg_keep must be a probability in [0, 1], got {self.rg_keep!r}")
        _choice(f"{key}.quantity", self.quantity, ("logit", "prob"))
        if (not isinstance(self.indices, list) or not self.indices or any(name not in INDICES for name in self.indices)
                or len(set(self.indices)) != len(self.indices)):
            raise ParamsError(f"{key}.indices must be a non-empty list of distinct names among {', '.join(INDICES)}, "
                              f"got {self.indices!r}")
        _positive_int(f"{key}.bootstrap", self.bootstrap)
        self.validate_overrides(key)


@dataclass(frozen=True)
class AblateParams:
    budgets: list
    random_repeats: int
    quantity: str
    permutations: int
    bootstrap: int

    def validate(self, key: str) -> None:
        if not isinstance(self.budgets, list) or not self.budgets:
            raise ParamsError(f"{key}.budgets must be a non-empty list of pair counts, got {self.budgets!r}")
        for i, budget in enumerate(self.budgets):
            _positive_int(f"{key}.budgets[{i}]", budget)
        _positive_int(f"{key}.random_repeats", self.random_repeats)
        _choice(f"{key}.quantity", self.quantity, QUANTITIES)
        _positive_int(f"{key}.permutations", self.permutations)
        _positive_int(f"{key}.bootstrap", self.bootstrap)


@dataclass(frozen=True)
class Params:
    seed: int
    device: str
    threads: int | str  # "auto" or a number of CPU threads
    datasets: list
    models: list
    moe_plain_datasets: list  # datasets on which moe_plain is trained too
    data: dict
    extract: ExtractParams
    model: ModelParams
    moe: MoEParams
    train: TrainParams
    explain: ExplainParams
    attribution: AttributionParams
    probe: ProbeParams
    ablate: AblateParams

    @classmethod
    def from_dict(cls, raw: Any) -> "Params":
        _check_keys(cls, raw, "")
        _non_negative_int("seed", raw["seed"])
        _choice("device", raw["device"], ("auto", "cpu", "cuda"))
        if raw["threads"] != "auto":
            _positive_int("threads", raw["threads"])
        for key in ("datasets", "models"):
            value = raw[key]
            if not isinstance(value, list) or not value:
                raise ParamsError(f"{key} must be a non-empty list, got {value!r}")
            if len(set(value)) != len(value):
                raise ParamsError(f"{key} lists a name twice: {value!r}")
        for name in raw["models"]:
            if name not in MODELS:
                raise ParamsError(f"models: unknown name {name!r} (known: {', '.join(MODELS.names)})")
        _moe_plain_datasets(raw["moe_plain_datasets"], raw["datasets"], raw["models"])
        if not isinstance(raw["data"], dict):
            raise ParamsError(f"data must be a mapping, got {raw['data']!r}")
        data = {name: _data_section(name, section) for name, section in raw["data"].items()}
        for name in raw["datasets"]:
            if name not in data:
                raise ParamsError(f"datasets lists {name!r} but data.{name} is missing")
        params = cls(seed=raw["seed"], device=raw["device"], threads=raw["threads"], datasets=raw["datasets"], models=raw["models"],
                     moe_plain_datasets=raw["moe_plain_datasets"],
                     data=data, extract=_build(ExtractParams, raw["extract"], "extract"),
                     model=_build(ModelParams, raw["model"], "model"), moe=_build(MoEParams, raw["moe"], "moe"),
                     train=_build(TrainParams, raw["train"], "train"),
                     explain=_build(ExplainParams, raw["explain"], "explain"),
                     attribution=_build(AttributionParams, raw["attribution"], "attribution"),
                     probe=_build(ProbeParams, raw["probe"], "probe"),
                     ablate=_build(AblateParams, raw["ablate"], "ablate"))
        for key in ("train", "probe"):
            for name in getattr(params, key).overrides:
                if name not in data:
                    raise ParamsError(f"{key}.overrides: unknown dataset {name!r} (known: {', '.join(data)})")
        for dataset in params.datasets:
            trained = params.train.for_dataset(dataset).seeds
            if params.explain.seeds != "all" and not set(params.explain.seeds) <= set(trained):
                raise ParamsError(f"explain.seeds = {params.explain.seeds} are not all among the seeds {trained} "
                                  f"trained on {dataset} (train.seeds, train.overrides): only trained seeds can "
                                  "be explained")
        return params

    def explained_seeds(self, dataset: str) -> list[int]:
        """The trained seeds whose models the explanation stages explain on `dataset` (explain.seeds)."""
        return self.train.for_dataset(dataset).seeds if self.explain.seeds == "all" else list(self.explain.seeds)


def _data_section(name: Any, section: Any):
    """The `data.<name>` section built by the dataset registered as its `kind` (by default `name`)."""
    key = f"data.{name}"
    # The name becomes folder names and stage keys <dataset>-<model>.
    if not (isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9_]+", name)):
        raise ParamsError(f"{key}: a dataset name is made of letters, digits and _, got {name!r}")
    if not isinstance(section, dict):
        raise ParamsError(f"{key} must be a mapping, got {section!r}")
    settings = dict(section)
    kind = settings.pop("kind", name)
    if kind not in DATASETS:
        raise ParamsError(f"{key}: unknown dataset {kind!r}: name a registered one, or set {key}.kind to one "
                          f"(known: {', '.join(DATASETS.names)})")
    return _build(DATASETS[kind], settings, key)


def _moe_plain_datasets(value: Any, datasets: list, models: list) -> None:
    if not isinstance(value, list) or len(set(value)) != len(value):
        raise ParamsError(f"moe_plain_datasets must be a list of distinct dataset names, got {value!r}")
    for name in value:
        if name not in datasets:
            raise ParamsError(f"moe_plain_datasets lists {name!r}, which is not in datasets {datasets}")
    if "moe_plain" in models and set(value) != set(datasets):
        raise ParamsError(f"models lists moe_plain, which is then explained on every dataset: moe_plain_datasets "
                          f"must list all of datasets {datasets}, got {value}")


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path} not found: run the stages from the project root")
    # DVC's own parser (ruamel.yaml, YAML 1.2), as DVC reads the file it writes: `dvc exp run -S
    # train.lr=1e-5` writes `1e-05`, a float in YAML 1.2 but a string in PyYAML's YAML 1.1.
    try:
        raw = parse_yaml(path.read_text(), str(path))
    except YAMLError as e:
        raise ParamsError(f"{path} is not valid YAML: {e}") from e
    return Params.from_dict(raw)
