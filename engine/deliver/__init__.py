"""After training: try the model beside its base, merge it safely, ship it to llama.cpp,
Ollama and vLLM."""
