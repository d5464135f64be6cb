"""What the notebooks use: lab helpers, no-engine mode, recordings, widgets, the release tool
and JupyterLab."""
