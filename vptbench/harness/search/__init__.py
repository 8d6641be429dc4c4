"""Per-strategy hyperparameter search on validation (Optuna, ask-and-tell on the driver): the
space checked before anything loads, trials run through the suite's executor, pruned against the
trials before them, and the study kept in the run directory so that a resume continues it."""
