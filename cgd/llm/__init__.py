"""Wire types of the OpenAI-compatible servers we call (the client is cgd.llm_client)."""
