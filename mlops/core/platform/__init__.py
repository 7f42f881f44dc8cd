"""The platform around the pipelines: the CLI, the demo, Mage's server and launcher, the native stack, and the
compose stack with its engine, images and ``.env``."""
