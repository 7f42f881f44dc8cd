"""The data stage: the raw file found or downloaded, validated, checked for leaks, split; the model's input frame."""
