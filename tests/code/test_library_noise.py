"""What counts as library noise in the demo's output (the demo's own test requires none of it)."""

from mlops.core.platform.demo import library_noise

NOISE = [
    "WARNING:traitlets:Message signing is disabled.  This is insecure and not recommended!",
    "INFO:mage_ai.data_preparation.executors.pipeline_executor:[PipelineExecutor] No running loop",
    "DBT library not installed.",
    "2026/11/30 13:58:53 INFO mlflow.utils.uv_utils: Detected uv project: found uv.lock and pyproject.toml",
    "2026/11/30 13:58:54 WARNING mlflow.utils.environment: Failed to resolve installed pip version.",
    "Downloading artifacts:   0%|          | 0/1 [00:00<?, ?it/s]\rDownloading artifacts: 100%|██████████| 1/1",
    "/x/site-packages/sklearn/base.py:1: UserWarning: X does not have valid feature names",
]
OURS = [
    "prepare: done in 7 s",
    "deploy decision: promoted: version 2 beats champion 1 by more than 0 on roc_auc (0.7725 vs 0.7374, +0.0351)",
    "│ summer │    v1 │ 18,483 │         8 (53%) │            0.547 │    8.4% │  0.6759 │",
    "trained model families ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━ 4/4 0:00:28",
    "  stop it:            .venv/bin/python -m mlops down",
]


def test_library_lines_are_noise_and_ours_are_not() -> None:
    assert library_noise("\n".join(NOISE)) == NOISE
    assert library_noise("\n".join(OURS)) == []
