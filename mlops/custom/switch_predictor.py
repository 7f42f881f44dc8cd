"""deploy: make the predictor at serving.url serve the payload (graceful reload, or start it natively); if that
fails, the promotion is undone so that the champion alias and the served model agree."""

from mlops.core import config
from mlops.core.lifecycle import deploy

if "custom" not in globals():
    from mage_ai.data_preparation.decorators import custom


@custom
def switch_predictor(deployed: dict, *args, **kwargs) -> dict:
    settings = config.load()
    outcome = deploy.serve_or_revert(settings, deployed)
    print(outcome)
    return {**deployed, "predictor": outcome}
