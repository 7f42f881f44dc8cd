"""retrain: train a new `challenger` on the reference plus the labeled batches (only if the alert decided so)."""

from mlops.core import config
from mlops.core.lifecycle import retrain

if "custom" not in globals():
    from mage_ai.data_preparation.decorators import custom


@custom
def retrain_challenger(decision: dict, *args, **kwargs) -> dict:
    settings = config.load()
    return retrain.retrain(settings, decision).to_dict()
