"""Applications: each wires data, a model and the trainer together behind a typed config."""
