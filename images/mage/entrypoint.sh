#!/bin/sh
# Start of the Mage container: pin the API triggers in Mage's database, then run Mage in the foreground.
# The bootstrap is idempotent (a restart repeats it harmlessly); nothing is installed here.
set -eu

# Mage's migrations on MAGE_DATABASE_CONNECTION_URL, then the retrain pipeline's API trigger with its
# pinned id (orchestration.retrain_schedule_id) and token (MLOPS_SECRETS__RETRAIN_TOKEN), which Grafana calls
python -m mlops.core.platform.orchestration bootstrap

# Mage's own CLI, with its process queue's enqueue races closed (see mlops/core/platform/mage_launcher.py)
exec python -m mlops.core.platform.mage_launcher start mlops --host 0.0.0.0 --port 6789
