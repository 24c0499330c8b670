"""Answer extraction and scoring for the evaluation tasks (pure functions, no model, no network)."""
