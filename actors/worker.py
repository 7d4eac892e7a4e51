"""Entry module for ``dramatiq crossledger.actors.worker``: what each worker process imports.

The configuration comes from the environment (CROSSLEDGER_CONFIG, CROSSLEDGER_BROKER,
CROSSLEDGER_STORE), which ``crossledger worker`` passes on to the processes it starts. Importing it
builds the runtime and declares the actors, nothing more: the recovery work a worker does when it
starts (open circuits, idle journey runs) is the Recovery middleware's, at worker boot.
"""

import logging

from crossledger.actors import declare
from crossledger.core.hub.runtime import Runtime
from crossledger.core.processes.shutdown import absorb_echoed_sigterm
from crossledger.core.settings import load_settings

logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request drowns the worker log
runtime = Runtime(load_settings())
broker = runtime.broker
actors = declare(runtime)
absorb_echoed_sigterm()
