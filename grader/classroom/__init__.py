"""Running a class on one machine: the class list, JupyterHub with a server and a rootless Docker
engine per learner, and the nbgrader exchange between them (``grader hub up|down|status``)."""
