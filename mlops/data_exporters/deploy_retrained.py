"""retrain: run the deploy pipeline on the common holdout; it promotes the new version only if it is better."""

from mlops.core import config
from mlops.core.lifecycle import retrain
from mlops.core.platform import orchestration

if "data_exporter" not in globals():
    from mage_ai.data_preparation.decorators import data_exporter


@data_exporter
def deploy_retrained(retrained: dict, *args, **kwargs) -> dict:
    settings = config.load()
    result = retrain.deploy_retrained(settings, retrained, orchestration.pipeline_runner(kwargs))
    print(f"retrain outcome: {result.get('outcome') or result.get('reason')}")
    return result
