"""The retrain process killed mid-run (SIGKILL, no cleanup): the champion is unchanged and the next retrain
and deploy work. Runs on a model name of its own (a copy of the trained challenger as champion), so the
suite's `bank-marketing` aliases are untouched."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from mlflow.tracking import MlflowClient

from mlops.core import config
from mlops.core.lifecycle import promotion
from mlops.core.training import registry

pytestmark = [pytest.mark.postgres, pytest.mark.mlflow, pytest.mark.slow]

# One quick family: the drill is about the process, not the model.
RETRAIN_ENV = {
    "MLOPS_TRAINING__FAMILIES": "[logistic_regression]",
    "MLOPS_TRAINING__SEARCH__MAX_TRIALS": "1",
    "MLOPS_TRAINING__SEARCH__TIME_BUDGET_SECONDS": "5",
}
STARTED = "retrain-started"
# The retrain pipeline's core, as its blocks call it, for an alert that decided to retrain.
RETRAIN = (
    "import json\n"
    "from mlops.core import config\n"
    "from mlops.core.lifecycle import retrain\n"
    f"print({STARTED!r}, flush=True)\n"
    "print(json.dumps(retrain.retrain(config.load(), {'retrain': True, 'alert_id': None}).to_dict()), flush=True)\n"
)


def aliases(client: MlflowClient, name: str) -> dict[str, str]:
    return {alias: str(v) for alias, v in client.get_registered_model(name).aliases.items()}


def test_a_killed_retrain_leaves_the_champion_and_the_next_one_works(
    trained: object, settings: config.Settings
) -> None:
    name = f"reliability-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, **RETRAIN_ENV, "MLOPS_TRAINING__MODEL_NAME": name}
    ours = config.load(environ=env)
    client = registry.configure(ours)
    trained_version = registry.version_by_alias(client, settings.training.model_name, registry.CHALLENGER)
    assert trained_version is not None
    first = registry.register(client, trained_version.source, name, dict(trained_version.tags)).version
    client.set_registered_model_alias(name, registry.CHALLENGER, first)
    assert promotion.promote_if_better(ours).champion == str(first)
    before = aliases(client, name)

    # the killed run searches long (it must still be fitting when the kill comes); the next one is quick
    searching = {
        **env,
        "MLOPS_TRAINING__SEARCH__MAX_TRIALS": "500",
        "MLOPS_TRAINING__SEARCH__TIME_BUDGET_SECONDS": "120",
    }
    killed = subprocess.Popen(
        [sys.executable, "-c", RETRAIN],
        env=searching,
        cwd=ours.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert killed.stdout is not None
    for line in killed.stdout:  # imports done, retraining begins
        if STARTED in line:
            break
    time.sleep(3)  # mid-run: reading the batches, fitting
    assert killed.poll() is None, "the retrain finished before it could be killed: the drill proves nothing"
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    assert killed.returncode == -signal.SIGKILL
    assert aliases(client, name) == before  # champion (and challenger) untouched
    assert promotion.champion_version(ours) == str(first)

    # The next trigger: retrain to the end, then deploy on the common holdout it names.
    done = subprocess.run(
        [sys.executable, "-c", RETRAIN], env=env, cwd=ours.root, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    retrained = json.loads(done.stdout.strip().splitlines()[-1])
    assert retrained["version"] is not None and aliases(client, name)[registry.CHALLENGER] == retrained["version"]
    decision = promotion.promote_if_better(ours, retrained["holdout"])
    assert decision.action in ("promoted", "rejected")
    assert promotion.champion_version(ours) == decision.champion
