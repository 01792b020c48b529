"""One file per model, one YAML of its hyperparameters beside it (see bench/zoo.py)."""
