"""dvc.yaml keeps DVC's promises: each stage depends on every project file it runs, the run-cache is on, and
wall times never enter the metrics. Static checks of the pipeline as DVC itself resolves it."""

import ast
from pathlib import Path

import pytest
from dvc.repo import Repo

from conftest import REPO

SRC = REPO / "src"
# Imported by every stage, deliberately not a dependency: params.py only validates params.yaml, whose values are
# dependencies through each stage's `params:` list (a new params section must not re-run everything), and the
# package's __init__ holds its docstring and version. What params.py imports only to validate (the registries of
# names) is not followed either: a stage depends on such a module when it imports it itself.
NOT_DEPENDENCIES = {"src/fli2moe/params.py", "src/fli2moe/__init__.py"}


def imported_files(path: Path) -> set[Path]:
    """Files under src/ that `path` imports anywhere in its body (module level or inside functions), with the
    __init__.py of every package on the way (importing a.b.c runs a/__init__ and a/b/__init__)."""
    package = path.relative_to(SRC).parent.parts if SRC in path.parents else ()
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import: climb from this file's package
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    files = set()
    for name in names:
        parts = name.split(".")
        for k in range(1, len(parts) + 1):
            for candidate in (SRC.joinpath(*parts[:k]).with_suffix(".py"), SRC.joinpath(*parts[:k], "__init__.py")):
                if candidate.is_file():
                    files.add(candidate)
    return files


def import_closure(script: Path) -> set[str]:
    """Project files (relative to the repository) that running `script` imports, transitively."""
    todo, seen = [script], set()
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            if str(path.relative_to(REPO)) not in NOT_DEPENDENCIES:
                todo.extend(imported_files(path) - seen)
    return {str(p.relative_to(REPO)) for p in seen if SRC in p.parents}


@pytest.fixture(scope="module")
def stages():
    """Every stage of dvc.yaml with its foreach/matrix items resolved by DVC from params.yaml."""
    return list(Repo(str(REPO)).index.stages)


def test_every_stage_depends_on_every_project_file_it_imports(stages):
    assert stages
    for stage in stages:
        script = next(word for word in stage.cmd.split() if word.endswith(".py"))
        deps = [dep.def_path for dep in stage.deps]
        dataset = stage.addressing.split("@")[1].split("-")[0] if "@" in stage.addressing else None
        allowed = set(NOT_DEPENDENCIES)
        if stage.addressing.startswith("extract@"):
            # extract@<dataset> imports every loader, but only its own one reads this dataset's files.
            allowed |= {f"src/fli2moe/datasets/{p.name}" for p in (SRC / "fli2moe" / "datasets").glob("*.py")
                        if p.stem not in ("__init__", dataset)}
        missing = sorted(f for f in import_closure(REPO / script) - allowed
                         if not any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps))
        assert not missing, f"{stage.addressing} imports but does not depend on {missing}"
        assert script in deps


def test_run_cache_is_on_for_every_stage_but_the_report(stages):
    """DVC saves a stage to its run-cache only if every `cache: false` output is a metric or a plot
    (dvc/stage/__init__.py: `no_cache_outs`); the report's committed HTML and Markdown are neither."""
    for stage in stages:
        uncached = [o.def_path for o in stage.outs if not (o.use_cache or o.is_metric or o.is_plot)]
        expected = ["reports/index.html", "reports/report.md"] if stage.addressing == "report" else []
        assert uncached == expected, stage.addressing


def test_wall_times_are_outputs_not_metrics(stages):
    for stage in stages:
        for out in stage.outs:
            assert not (out.is_metric and "timing" in out.def_path), (stage.addressing, out.def_path)
            if out.def_path.startswith("timing/"):
                assert out.use_cache, (stage.addressing, out.def_path)


def test_no_param_shares_its_column_with_a_path(stages):
    """`dvc exp show` puts flattened params (`train.lr`) and dependency paths (`features/enrico`) in one
    namespace: the param `models` and the report's dependency folder models/ shared a column, which hid the
    param's value and made `dvc exp show --drop models` fail."""
    import yaml

    def flat(tree, prefix=""):
        for key, value in tree.items():
            yield from flat(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}"]

    params = set(flat(yaml.safe_load((REPO / "params.yaml").read_text())))
    paths = {entry.def_path for stage in stages for entry in [*stage.deps, *stage.outs]}
    assert "models" in params and "checkpoints" in paths and not params & paths
