"""The FAISS index of LLM-written category summaries."""
