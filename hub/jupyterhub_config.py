"""JupyterHub for a class of this course on one machine; `grader hub up` starts it with this file.

Read from the environment `grader hub up` sets: COURSE_HUB_HOME (the venv and the proxy),
COURSE_HUB_STATE (database, secrets, logs), COURSE_HUB_EXCHANGE, COURSE_HUB_PORT and
COURSE_HUB_CLASS (the class list). Logins are system users (PAM); each learner's server runs
as that user, with a rootless Docker engine of their own started on spawn and stopped on stop
(grader.classroom.spawn).
"""

import os
from pathlib import Path

from grader.classroom import classlist, spawn

c = get_config()  # noqa: F821 - injected by JupyterHub when it loads this file

HOME = Path(os.environ["COURSE_HUB_HOME"])
STATE = Path(os.environ["COURSE_HUB_STATE"])
CLASS = classlist.load(Path(os.environ["COURSE_HUB_CLASS"]))

c.JupyterHub.bind_url = f"http://127.0.0.1:{os.environ.get('COURSE_HUB_PORT', '8000')}"
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.db_url = f"sqlite:///{STATE / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(STATE / "run" / "jupyterhub-self.pid")
c.ConfigurableHTTPProxy.command = [str(HOME / "chp/node_modules/.bin/configurable-http-proxy")]
c.ConfigurableHTTPProxy.pid_file = str(STATE / "run" / "proxy.pid")
c.JupyterHub.cleanup_servers = True  # `grader hub down` stops every learner's server too

# Logins: the class list's system users, with the passwords `grader hub up` gave them.
c.JupyterHub.authenticator_class = "pam"
c.Authenticator.allowed_users = set(CLASS.everyone)
c.Authenticator.admin_users = {CLASS.instructor}
c.PAMAuthenticator.open_sessions = False

# Each server runs as its user, from the venv every user can execute.
c.Spawner.cmd = [str(HOME / "venv/bin/jupyterhub-singleuser")]
c.Spawner.notebook_dir = "~"
c.Spawner.default_url = "/lab"
c.Spawner.http_timeout = 60
c.Spawner.start_timeout = 120
c.Spawner.environment = {
    "PATH": f"{HOME / 'venv/bin'}:/usr/local/bin:/usr/bin:/bin",
    "JUPYTERLAB_SETTINGS_DIR": "",  # each user's own (~/.jupyter/lab/user-settings)
}
c.Spawner.pre_spawn_hook = spawn.before(CLASS)
c.Spawner.post_stop_hook = spawn.after(CLASS)
