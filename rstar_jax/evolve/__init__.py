"""Self-evolution: the round driver, its config, evaluation, report, run folder and loading."""
