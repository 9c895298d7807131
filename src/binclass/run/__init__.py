"""The run folder: every file a run writes and reads, and nothing else. Recipes, the engine, the doctor
and the report all go through this package for file names and formats."""
