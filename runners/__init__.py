"""Where a task's command runs: process and docker runners. Knows nothing of flows."""
