"""The AG2 adapter: traced, checkpointed, validated and reviewable AG2 conversations."""
