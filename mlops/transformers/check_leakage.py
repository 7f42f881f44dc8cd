"""prepare: flag columns that leak the target; fail if a flagged column is still a model feature."""

import pandas as pd

from mlops.core import config, reporting
from mlops.core.data import leakage, preparation

if "transformer" not in globals():
    from mage_ai.data_preparation.decorators import transformer


@transformer
def check_leakage(raw: pd.DataFrame, *args, **kwargs) -> pd.DataFrame:
    settings = config.load()
    reference, _ = preparation.partition(raw, settings)
    results = leakage.check(reference, settings)
    records = leakage.as_records(results)
    reporting.show(reporting.leakage_table(records, settings.dataset.leakage.max_single_feature_auc))
    leakage.enforce(results)
    return pd.DataFrame(records)
