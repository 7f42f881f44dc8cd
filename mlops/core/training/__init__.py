"""The training stage: model families tuned and fitted, evaluated on ranking metrics, logged to MLflow's registry."""
