"""Parsers for what learners write: shell (build.sh) and Dockerfiles. No I/O, no docker."""
