#!/bin/sh
# Start of the Mage container: bring the stores up to date and pin the API triggers, then run Mage.
# Everything here is idempotent, so a restart repeats it harmlessly; nothing is installed.
set -eu

# the monitoring schema (Alembic migrations of mlops/core/store.py)
python -m mlops migrate
# Mage's database: its migrations, then the retrain pipeline's API trigger with its pinned id and token
python -m mlops mage-bootstrap

exec mage start mlops --host 0.0.0.0 --port 6789
