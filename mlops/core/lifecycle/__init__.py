"""The model's life: promotion only when better (deploy), tests through the running predictor, retrain on an
alert, and the campaign planner's use of the champion."""
