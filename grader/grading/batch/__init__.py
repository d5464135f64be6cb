"""Grading a whole class: the batch runner, its results on disk, and the gradebook CSV."""
