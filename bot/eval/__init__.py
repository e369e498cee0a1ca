"""Memory evals (retrieval recall, LLM-judged QA) on LoCoMo-format conversations."""
