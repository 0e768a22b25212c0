"""The execution engine: states, the executor, workers, typed inputs, runnable tasks."""
