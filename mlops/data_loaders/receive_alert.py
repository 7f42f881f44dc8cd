"""retrain: record every alert of Grafana's webhook body; decide whether a new firing alert starts a retrain."""

from mlops.core import config
from mlops.core.lifecycle import retrain

if "data_loader" not in globals():
    from mage_ai.data_preparation.decorators import data_loader


@data_loader
def receive_alert(*args, **kwargs) -> dict:
    settings = config.load()
    decision = retrain.receive(settings, retrain.webhook_body(kwargs))
    print(f"alert decision: {decision.reason}")
    return decision.to_dict()
