"""Serving: the predictor (Flask on gunicorn), its request contract and OpenAPI document, fast exact scoring,
the prediction log, the payload deploy writes, and the client pipelines and the app call it with."""
