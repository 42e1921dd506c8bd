"""The SDK that runs inside users' agent processes (durable runs, checkpoints, hand-offs)."""
