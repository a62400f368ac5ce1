"""The notes app's FastAPI backend: its name is also one of taskgate's, on purpose."""
