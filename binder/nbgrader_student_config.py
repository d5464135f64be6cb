"""nbgrader as a learner uses it (Validate, the Assignments tab): binder/postBuild copies it to
~/.jupyter/nbgrader_config.py; a JupyterHub image puts it in /etc/jupyter/ (docs/jupyterhub.md).

The course id matches the instructor's nbgrader_config.py at the repository root.
"""

import os

c = get_config()  # noqa: F821 - injected by nbgrader when it loads this file

c.CourseDirectory.course_id = "multiplatform-builds"
# The exchange is the hub's shared folder; on Binder there is none and the labs are
# already in labs/ (the Assignments tab then says the exchange does not exist).
c.Exchange.root = os.environ.get("NBGRADER_EXCHANGE_ROOT", "/srv/nbgrader/exchange")
