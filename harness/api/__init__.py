"""The contracts between the engine and what plugs into it: models, benchmarks, scorers, report sections."""
