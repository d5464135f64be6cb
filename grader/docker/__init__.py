"""What the grader knows of Docker itself: the registry client, image layers, ELF headers,
buildx progress, and docker's options."""
