"""deploy: write the predictor payload for the current champion (unchanged if it already serves it)."""

from mlops.core import config
from mlops.core.lifecycle import deploy

if "data_exporter" not in globals():
    from mage_ai.data_preparation.decorators import data_exporter


@data_exporter
def write_predictor_payload(decision: dict, *args, **kwargs) -> dict:
    settings = config.load()
    folder, rewritten = deploy.payload_for_champion(settings)
    print(f"payload {'written' if rewritten else 'unchanged'}: {folder} (champion {decision['champion']})")
    return {**decision, "payload": str(folder), "payload_rewritten": rewritten}
