"""shared/llm."""
