"""The bottom layer: parameters, data sets and splits, models, the training loop, the artefact cache,
and a run's context with the models every layer shares (M_o, M_g, M_g'). Imports nothing above it."""
