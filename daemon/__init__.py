"""The control plane: flow language, git sync, store, executor, scheduler, triggers, CLI."""
