"""Entry module for ``dramatiq crossledger.actors.worker``: what each worker process imports.

The configuration comes from the environment (CROSSLEDGER_CONFIG, CROSSLEDGER_BROKER,
CROSSLEDGER_STORE), which ``crossledger worker`` passes on to the processes it starts.
"""

import logging

from crossledger.actors import declare
from crossledger.core.runtime import Runtime
from crossledger.core.settings import load_settings
from crossledger.core.shutdown import absorb_echoed_sigterm

logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request drowns the worker log
runtime = Runtime(load_settings())
broker = runtime.broker
actors = declare(runtime)
runtime.recover_circuits()
runtime.journeys.recover()
absorb_echoed_sigterm()
