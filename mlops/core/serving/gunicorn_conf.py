"""gunicorn settings of the predictor natively (``gunicorn -c python:mlops.core.serving.gunicorn_conf``).

Everything comes from :func:`mlops.core.serving.predictor_server.gunicorn_settings` (bind address and worker count
from the configuration's ``serving`` section, reload and shutdown hooks); the generated payload's
``gunicorn.conf.py`` does the same.
"""

from mlops.core.serving import predictor_server

globals().update(predictor_server.gunicorn_settings())
