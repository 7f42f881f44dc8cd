"""Every Mage pipeline's metadata is consistent, and every block is a thin wrapper around mlops.core."""

import ast
from pathlib import Path

import pytest
import yaml

PROJECT = Path(__file__).resolve().parents[2] / "mlops"
FOLDERS = {
    "data_loader": "data_loaders",
    "transformer": "transformers",
    "data_exporter": "data_exporters",
    "custom": "custom",
}
PIPELINES = sorted(p.parent.name for p in (PROJECT / "pipelines").glob("*/metadata.yaml"))
MAX_BLOCK_STATEMENTS = 12  # blocks compose; logic lives in mlops.core


def blocks(pipeline: str) -> list[dict]:
    return yaml.safe_load((PROJECT / "pipelines" / pipeline / "metadata.yaml").read_text())["blocks"]


def test_the_pipelines_exist() -> None:
    assert {"prepare", "train"} <= set(PIPELINES)


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_upstream_and_downstream_blocks_match(pipeline: str) -> None:
    by_uuid = {b["uuid"]: b for b in blocks(pipeline)}
    for block in by_uuid.values():
        for up in block["upstream_blocks"]:
            assert up in by_uuid, f"{block['uuid']}: unknown upstream {up}"
            assert block["uuid"] in by_uuid[up]["downstream_blocks"], f"{up} does not list {block['uuid']} downstream"
        for down in block["downstream_blocks"]:
            assert down in by_uuid, f"{block['uuid']}: unknown downstream {down}"
            assert block["uuid"] in by_uuid[down]["upstream_blocks"], f"{down} does not list {block['uuid']} upstream"


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_block_files_exist_and_are_thin(pipeline: str) -> None:
    for block in blocks(pipeline):
        path = PROJECT / FOLDERS[block["type"]] / f"{block['uuid']}.py"
        assert path.is_file(), f"{pipeline}: missing block file {path}"
        assert not path.name.startswith("test_"), "Mage would treat it as a test"
        tree = ast.parse(path.read_text())
        functions = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
        assert functions, f"{path} defines no block function"
        for fn in functions:
            statements = sum(1 for node in ast.walk(fn) if isinstance(node, ast.stmt)) - 1
            assert statements <= MAX_BLOCK_STATEMENTS, f"{path}:{fn.name} has {statements} statements"
        imports = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("mlops")]
        assert imports, f"{path} does not call mlops.core"


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_root_blocks_run_in_process_too(pipeline: str) -> None:
    """Mage's in-process execute_sync (how retrain runs deploy) starts only at loader, transformer or
    exporter roots: a `custom` root block is skipped silently."""
    roots = [b for b in blocks(pipeline) if not b["upstream_blocks"]]
    assert roots and all(b["type"] in ("data_loader", "transformer", "data_exporter") for b in roots), roots
