"""The public API: a curated, complete ``__all__``; one documented error tree; clean layers."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
import types
from pathlib import Path

import hpcsnap
import hpcsnap.sdk
from hpcsnap.sdk import errors

SRC = Path(hpcsnap.__file__).parent
FORBIDDEN = ("server", "agent", "executors", "snapshot", "blobstore", "web", "cli")


def test_all_is_complete_and_importable() -> None:
    assert sorted(hpcsnap.__all__) == sorted(set(hpcsnap.__all__))
    for name in hpcsnap.__all__:
        assert hasattr(hpcsnap, name), name
    public = {
        name
        for name, value in vars(hpcsnap).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public <= set(hpcsnap.__all__), public - set(hpcsnap.__all__)
    assert set(hpcsnap.sdk.__all__) | {"__version__"} == set(hpcsnap.__all__)
    namespace: dict[str, object] = {}
    exec("from hpcsnap import *", namespace)
    assert set(hpcsnap.__all__) <= set(namespace)


def test_seed_names_exist() -> None:
    conn_api = {"create_task", "retrieve_task", "tasks", "create_bucket", "retrieve_bucket"}
    assert conn_api | {"buckets"} <= set(dir(hpcsnap.Connection))
    task_api = {
        "constants", "resources", "results", "snapshot_whitelist", "snapshot_blacklist",
        "results_whitelist", "results_blacklist", "upload_results_on_cancellation", "submit",
        "run", "wait", "state", "abort", "delete", "stdout", "fresh_stdout", "download_results",
        "instant", "snapshot", "snapshot_periodic", "snapshot_status", "wait_snapshot",
        "snapshots", "download_snapshot", "latest_snapshot",
    }  # fmt: skip
    assert task_api <= set(dir(hpcsnap.Task)), task_api - set(dir(hpcsnap.Task))
    bucket_api = {"add_file", "add_directory", "get_file", "get_all_files", "list_files", "delete"}
    assert bucket_api <= set(dir(hpcsnap.Bucket))


def test_errors_form_one_documented_tree() -> None:
    doc = errors.__doc__ or ""
    classes = [getattr(errors, n) for n in errors.__all__]
    assert {c.__name__ for c in classes} == set(errors.__all__)
    for cls in classes:
        assert issubclass(cls, errors.HpcsnapError), cls
        assert cls.__name__ in doc, f"{cls.__name__} missing from the tree in errors.__doc__"
        assert cls.__doc__, cls
        assert getattr(hpcsnap, cls.__name__) is cls
    # the tree in the docstring is the real one: each name's parent is the nearest line above
    # with a smaller indentation
    lines = [ln for ln in doc.splitlines() if any(c.__name__ in ln for c in classes)]
    stack: list[tuple[int, str]] = []
    for line in lines:
        name = next(w for w in line.replace("─", " ").split() if hasattr(errors, w))
        depth = line.index(name)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            assert stack[-1][1] in [b.__name__ for b in getattr(errors, name).__mro__[1:]], name
        stack.append((depth, name))
    # compatibility with code written for the qarnot SDK
    assert issubclass(errors.BadRequestError, ValueError)
    assert issubclass(errors.TaskSubmittedError, AttributeError)
    assert issubclass(errors.WaitTimeoutError, TimeoutError)


def _imports(path: Path, *, top_level_only: bool) -> list[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names: list[str] = []
    for node in nodes:
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_sdk_imports_only_httpx_websockets_pydantic_and_stdlib() -> None:
    for path in (SRC / "sdk").rglob("*.py"):
        for name in _imports(path, top_level_only=False):
            root = name.split(".")[0]
            if root == "hpcsnap":
                assert name.startswith("hpcsnap.sdk"), f"{path.name} imports {name}"
            else:
                # websockets: the client of Task.shell (sdk/shell.py)
                allowed = ("httpx", "pydantic", "websockets")
                assert root in sys.stdlib_module_names or root in allowed, (
                    f"{path.name} imports {name}"
                )


def test_cli_imports_the_server_only_inside_server_commands() -> None:
    for path in (SRC / "cli").rglob("*.py"):
        for name in _imports(path, top_level_only=True):
            parts = name.split(".")
            assert not (parts[0] == "hpcsnap" and len(parts) > 1 and parts[1] in FORBIDDEN[:-1]), (
                f"{path.name} imports {name} at module level"
            )


def test_importing_hpcsnap_loads_no_server_code() -> None:
    code = (
        "import sys, hpcsnap, hpcsnap.cli.main\n"
        f"bad = [m for m in sys.modules if m.split('.')[:2][-1] in {FORBIDDEN[:-1]!r}"
        " and m.startswith('hpcsnap.')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_options_are_keyword_only_after_the_seed_positionals() -> None:
    sig = inspect.signature(hpcsnap.Connection)
    positional = [p.name for p in sig.parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert positional == ["fileconf", "client_token", "cluster_url"]
    for method in ("download_results", "wait_snapshot", "download_snapshot"):
        params = inspect.signature(getattr(hpcsnap.Task, method)).parameters
        assert params["progress"].kind is inspect.Parameter.KEYWORD_ONLY, method
