"""The notes app's own shared package: its name is also one of taskgate's, on purpose."""
