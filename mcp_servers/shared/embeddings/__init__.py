"""shared/embeddings."""
