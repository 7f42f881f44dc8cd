"""deploy: compare @challenger with @champion on the same held-out data; promote only if it is better."""

from mlops.core import config
from mlops.core.lifecycle import promotion

if "transformer" not in globals():
    from mage_ai.data_preparation.decorators import transformer


# A transformer, not a custom block: Mage's in-process execute_sync starts only at loader/transformer/exporter
# roots, and retrain runs this pipeline that way.
@transformer
def compare_and_promote(*args, **kwargs) -> dict:
    settings = config.load()
    decision = promotion.promote_if_better(settings, kwargs.get("holdout"))
    print(f"deploy decision: {decision.action}: {decision.reason}")
    return decision.to_dict()
